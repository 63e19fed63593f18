"""Developer tooling: `semcache up` (a whole mesh in local processes), a local Redis,
readiness probes for supervised processes and the protobuf code generator."""
