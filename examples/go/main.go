// Command semcache-example calls semcache from Go: the semcache.v1.SemanticCache service of
// the router, through stubs generated from protos/semcache/v1/cache.proto (build.sh).
//
// Environment:
//
//	SEMCACHE_ADDRESS  host:port of the router (default 127.0.0.1:50051)
//	SEMCACHE_TOKEN    API token, sent as `authorization: Bearer <token>` (when the router
//	                  has tokens on; the token then decides the tenant)
//	SEMCACHE_TENANT   tenant (default "go-example"; with a token and no tenant, the token's)
//
// It prints one JSON line per step on stdout: (a) look-aside: Lookup (miss), your own LLM
// call, Store, Lookup of a paraphrase (hit); (b) read-through: Complete (miss: the mesh calls
// its LLM and stores), Complete of a paraphrase (hit); (c) the token as metadata; (d) a
// deadline on every call; (e) status codes: a bad request is INVALID_ARGUMENT, and
// UNAVAILABLE / DEADLINE_EXCEEDED mean "no cache for this call: call your LLM yourself"
// (cachedOrLLM below). It exits 0 only when both paraphrases were semantic hits after a miss
// and the bad request was rejected with INVALID_ARGUMENT.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "semcache/gen/semcachev1"
)

const deadline = 5 * time.Second

// Pairs the MiniLM embedder scores far above the hit threshold (tests/test_mesh.py).
var (
	lookAside   = [2]string{"How do I renew my passport?", "How can I renew my passport?"}
	readThrough = [2]string{"How do I reset my router?", "How can I reset my router?"}
)

// Cache wraps the generated stub: every call carries the token (when there is one) and its
// own deadline, so a slow cache never holds a request longer than it is worth.
type Cache struct {
	stub  pb.SemanticCacheClient
	token string
}

func (c *Cache) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, deadline)
	if c.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	}
	return ctx, cancel
}

func (c *Cache) Lookup(ctx context.Context, r *pb.LookupRequest) (*pb.LookupResponse, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.stub.Lookup(ctx, r)
}

func (c *Cache) Store(ctx context.Context, r *pb.StoreRequest) (*pb.StoreResponse, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.stub.Store(ctx, r)
}

func (c *Cache) Complete(ctx context.Context, r *pb.CompleteRequest) (*pb.CompleteResponse, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.stub.Complete(ctx, r)
}

func (c *Cache) Invalidate(ctx context.Context, r *pb.InvalidateRequest) (*pb.InvalidateResponse, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.stub.Invalidate(ctx, r)
}

// cacheUnavailable: codes that mean "the cache is not there for this call". Do not fail
// your request on them: answer it without the cache. INVALID_ARGUMENT, UNAUTHENTICATED and
// PERMISSION_DENIED are bugs or configuration to fix, not something to retry.
func cacheUnavailable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, // nothing listens, the router restarts, a shard is gone
		codes.DeadlineExceeded,  // slower than our deadline
		codes.ResourceExhausted: // the router's admission limit
		return true
	}
	return false
}

// callMyLLM stands in for your own LLM client (OpenAI, Anthropic, a local model, ...).
func callMyLLM(_ context.Context, prompt string) (string, error) {
	return "fake LLM answer to: " + prompt, nil
}

// cachedOrLLM is the look-aside pattern as a backend would write it: Lookup; on a miss, or
// with no cache, call the LLM; then Store, without letting a failed Store fail the request.
func cachedOrLLM(ctx context.Context, c *Cache, scope *pb.Scope, prompt string) (string, bool, error) {
	found, err := c.Lookup(ctx, &pb.LookupRequest{Scope: scope, Prompt: prompt})
	if err != nil && !cacheUnavailable(err) {
		return "", false, err
	}
	if err == nil && found.GetCache().GetStatus() == pb.CacheStatus_CACHE_STATUS_HIT {
		return found.GetAnswer().GetText(), true, nil
	}
	text, llmErr := callMyLLM(ctx, prompt)
	if llmErr != nil {
		return "", false, llmErr
	}
	if err == nil { // the cache answered the Lookup: worth storing
		store := &pb.StoreRequest{Scope: scope, Prompt: prompt, Answer: &pb.Answer{Text: text}}
		if _, err := c.Store(ctx, store); err != nil && !cacheUnavailable(err) {
			return "", false, err
		}
	}
	return text, false, nil
}

// --- the demonstration ----------------------------------------------------------------

func report(step string, fields map[string]any) {
	line := map[string]any{"step": step}
	for k, v := range fields {
		line[k] = v
	}
	out, _ := json.Marshal(line)
	fmt.Println(string(out))
}

// short turns "CACHE_STATUS_MISS" into "miss", "MATCH_KIND_SEMANTIC" into "semantic" and
// an unspecified value into nil (JSON null).
func short(name, prefix string) any {
	if strings.HasSuffix(name, "_UNSPECIFIED") {
		return nil
	}
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

func describe(info *pb.CacheInfo) map[string]any {
	return map[string]any{
		"status":     short(info.GetStatus().String(), "CACHE_STATUS_"),
		"kind":       short(info.GetKind().String(), "MATCH_KIND_"),
		"similarity": info.GetSimilarity(),
		"threshold":  info.GetThreshold(),
		"entry_id":   info.GetEntryId(),
		"shard":      info.GetShard(),
	}
}

func with(fields map[string]any, more map[string]any) map[string]any {
	for k, v := range more {
		fields[k] = v
	}
	return fields
}

func grpcError(err error) map[string]any {
	s := status.Convert(err)
	return map[string]any{"code": int(s.Code()), "error": codeName(s.Code()), "details": s.Message()}
}

// codeName spells a code as the gRPC spec does ("INVALID_ARGUMENT"), as the other clients
// print it.
func codeName(code codes.Code) string {
	if code == codes.OK {
		return "OK"
	}
	var b strings.Builder
	for i, r := range code.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

type checks struct{ failures []string }

func (c *checks) expect(ok bool, format string, args ...any) {
	if !ok {
		c.failures = append(c.failures, fmt.Sprintf(format, args...))
	}
}

func (c *checks) missThenHit(step string, first, second map[string]any) {
	c.expect(first["status"] == "miss", "%s: the first prompt was not a miss (%v)", step, first["status"])
	c.expect(second["status"] == "hit" && second["kind"] == "semantic",
		"%s: the paraphrase was not a semantic hit (%v, %v, similarity %v vs threshold %v)",
		step, second["status"], second["kind"], second["similarity"], second["threshold"])
}

func demo(ctx context.Context, c *Cache, scope *pb.Scope, check *checks) error {
	// Start from a clean namespace, so that a second run shows the same miss then hit.
	reset, err := c.Invalidate(ctx, &pb.InvalidateRequest{
		Target: pb.InvalidateRequest_TARGET_NAMESPACE, Scope: scope,
	})
	if err != nil {
		return err
	}
	report("reset", map[string]any{"removed": reset.GetRemoved()})

	// (a) Look-aside: this process owns the LLM call.
	prompt, paraphrase := lookAside[0], lookAside[1]
	miss, err := c.Lookup(ctx, &pb.LookupRequest{Scope: scope, Prompt: prompt})
	if err != nil {
		return err
	}
	missInfo := describe(miss.GetCache())
	report("lookaside.lookup", with(map[string]any{"prompt": prompt}, missInfo))
	answer, err := callMyLLM(ctx, prompt)
	if err != nil {
		return err
	}
	report("lookaside.llm", map[string]any{"prompt": prompt, "answer": answer})
	stored, err := c.Store(ctx, &pb.StoreRequest{Scope: scope, Prompt: prompt, Answer: &pb.Answer{Text: answer}})
	if err != nil {
		return err
	}
	report("lookaside.store", map[string]any{"entry_id": stored.GetEntryId(), "shard": stored.GetShard()})
	hit, err := c.Lookup(ctx, &pb.LookupRequest{Scope: scope, Prompt: paraphrase})
	if err != nil {
		return err
	}
	hitInfo := describe(hit.GetCache())
	report("lookaside.lookup_paraphrase", with(map[string]any{
		"prompt": paraphrase, "matched_prompt": hit.GetCache().GetMatchedPrompt(), "answer": hit.GetAnswer().GetText(),
	}, hitInfo))
	check.missThenHit("look-aside", missInfo, hitInfo)
	check.expect(hit.GetAnswer().GetText() == answer, "look-aside: the hit did not return the stored answer")
	// The same flow as one function, the way a backend would call it.
	_, fromCache, err := cachedOrLLM(ctx, c, scope, paraphrase)
	if err != nil {
		return err
	}
	from := "llm"
	if fromCache {
		from = "cache"
	}
	report("lookaside.helper", map[string]any{"prompt": paraphrase, "from": from})
	check.expect(fromCache, "look-aside: cachedOrLLM did not answer from the cache")

	// (b) Read-through: the mesh calls its configured LLM on a miss and stores the answer.
	// In production, on a cacheUnavailable code from Complete, call your LLM yourself, unless
	// the error carries trailing metadata `semcache-error: upstream` (grpc.Trailer(&md) as a
	// call option): then it was the LLM behind the mesh that failed (its HTTP status in
	// `semcache-upstream-status`), and calling it again is a retry.
	question, rephrased := readThrough[0], readThrough[1]
	first, err := c.Complete(ctx, &pb.CompleteRequest{Scope: scope, Prompt: question})
	if err != nil {
		return err
	}
	firstInfo := describe(first.GetCache())
	report("readthrough.complete", with(map[string]any{
		"prompt": question, "answer": first.GetAnswer().GetText(),
	}, firstInfo))
	second, err := c.Complete(ctx, &pb.CompleteRequest{Scope: scope, Prompt: rephrased})
	if err != nil {
		return err
	}
	secondInfo := describe(second.GetCache())
	report("readthrough.complete_paraphrase", with(map[string]any{
		"prompt": rephrased, "matched_prompt": second.GetCache().GetMatchedPrompt(), "answer": second.GetAnswer().GetText(),
	}, secondInfo))
	check.missThenHit("read-through", firstInfo, secondInfo)

	// (e) A request that is the caller's fault fails with INVALID_ARGUMENT, and the details
	// say what to fix. Do not retry it.
	_, err = c.Complete(ctx, &pb.CompleteRequest{Scope: scope, Prompt: ""})
	if err == nil {
		report("errors.empty_prompt", map[string]any{"status": "OK"})
		check.expect(false, "errors: an empty prompt was accepted")
	} else {
		report("errors.empty_prompt", with(map[string]any{"status": codeName(status.Code(err))}, grpcError(err)))
		check.expect(status.Code(err) == codes.InvalidArgument,
			"errors: an empty prompt gave %s, not INVALID_ARGUMENT", codeName(status.Code(err)))
	}
	return nil
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func main() {
	address := env("SEMCACHE_ADDRESS", "127.0.0.1:50051")
	token := os.Getenv("SEMCACHE_TOKEN")
	// With a token the router knows the tenant; naming another one is PERMISSION_DENIED.
	tenant := os.Getenv("SEMCACHE_TENANT")
	if tenant == "" && token == "" {
		tenant = "go-example"
	}

	// One connection for the process; plaintext here (grpc.WithTransportCredentials with
	// credentials.NewClientTLSFromFile for TLS). grpc.Dial does not block: a mesh that is
	// not there shows as UNAVAILABLE on the first call.
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	if err != nil {
		fmt.Fprintln(os.Stderr, "semcache-example:", err)
		os.Exit(1)
	}
	defer conn.Close()
	cache := &Cache{stub: pb.NewSemanticCacheClient(conn), token: token}

	// The scope decides which earlier answers may be reused: tenant, model, system prompt,
	// generation parameters and earlier turns. Equal scopes share answers; nothing else does.
	scope := &pb.Scope{Tenant: tenant, Model: "gpt-example"}

	check := &checks{}
	if err := demo(context.Background(), cache, scope, check); err != nil {
		// A failed call that was not expected: say which code it was and what it means.
		var s interface{ GRPCStatus() *status.Status }
		if !errors.As(err, &s) {
			check.failures = append(check.failures, err.Error())
		} else {
			report("error", grpcError(err))
			code := status.Code(err)
			switch {
			case cacheUnavailable(err):
				check.failures = append(check.failures, fmt.Sprintf(
					"no cache at %s (%s): is the mesh running? (`make run`; in production, "+
						"call your LLM yourself on this code)", address, codeName(code)))
			case code == codes.Unauthenticated:
				check.failures = append(check.failures, fmt.Sprintf(
					"the router refused the token (%s): set SEMCACHE_TOKEN", status.Convert(err).Message()))
			default:
				check.failures = append(check.failures, fmt.Sprintf("%s: %s", codeName(code), status.Convert(err).Message()))
			}
		}
	}
	failures := check.failures
	if failures == nil {
		failures = []string{}
	}
	report("done", map[string]any{"ok": len(failures) == 0, "failures": failures})
	if len(failures) > 0 {
		for _, f := range failures {
			fmt.Fprintln(os.Stderr, "semcache-example:", f)
		}
		conn.Close()
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "semcache-example: OK (miss then semantic hit, both ways, at %s)\n", address)
}
