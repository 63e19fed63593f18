#!/usr/bin/env bash
# Builds the Go example offline from Debian's packages: OUT_DIR/semcache-example.
#
#   apt-get install -y golang-go golang-google-grpc-dev golang-google-protobuf-dev \
#       golang-github-golang-protobuf-1-5-dev protobuf-compiler
#   examples/go/build.sh OUT_DIR
#
# Debian ships Go libraries as sources under /usr/share/gocode/src, for GOPATH mode
# (GO111MODULE=off), not as modules: the protoc plugins are built from those same sources (so
# the generated code matches the runtime it links), the stubs are generated from
# protos/semcache/v1/cache.proto into a temporary GOPATH, and nothing generated is kept.
# GOCODE overrides where the Debian sources are.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
protos="$(cd "$here/../../protos" && pwd)"
gocode="${GOCODE:-/usr/share/gocode}"
install="apt-get install -y golang-go golang-google-grpc-dev golang-google-protobuf-dev"
install+=" golang-github-golang-protobuf-1-5-dev protobuf-compiler"

missing=()
command -v go >/dev/null || missing+=("go")
command -v protoc >/dev/null || missing+=("protoc")
[[ -d "$gocode/src/google.golang.org/grpc" ]] || missing+=("$gocode/src/google.golang.org/grpc")
[[ -d "$gocode/src/google.golang.org/protobuf" ]] || missing+=("$gocode/src/google.golang.org/protobuf")
# grpc-go 1.33 marshals through github.com/golang/protobuf. The version apt picks for it is v1.3,
# which cannot handle code from today's protoc-gen-go: it builds, then panics on the first
# response ("protobuf tag not enough fields in ...state"). v1.5 is the one built on
# google.golang.org/protobuf.
if [[ ! -f "$gocode/src/github.com/golang/protobuf/proto/registry.go" ]]; then
    missing+=("github.com/golang/protobuf v1.5 (golang-github-golang-protobuf-1-5-dev)")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "build.sh: missing ${missing[*]}; install with: $install" >&2
    exit 2
fi

mkdir -p "$1"
out="$(cd "$1" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# GOPATH mode over Debian's sources; never a module download.
export GO111MODULE=off GOPATH="$work/gopath:$gocode" GOFLAGS= GOPROXY=off GOTOOLCHAIN=local

go build -o "$work/bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$work/bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc

# cache.proto has no go_package option (the wire contract is language-neutral): the import
# path of the generated package is given here, and the stubs land in the GOPATH at that path.
package="Msemcache/v1/cache.proto=semcache/gen/semcachev1"
mkdir -p "$work/gopath/src"
PATH="$work/bin:$PATH" protoc -I "$protos" \
    --go_out="$work/gopath/src" --go_opt="$package" \
    --go-grpc_out="$work/gopath/src" --go-grpc_opt="$package" \
    semcache/v1/cache.proto

go build -o "$out/semcache-example" "$here/main.go"
echo "built $out/semcache-example"
