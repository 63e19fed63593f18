"""Prometheus metrics of the router, and its tracer (`semcache.runtime.tracing`)."""

from prometheus_client import Counter, Gauge, Histogram

from semcache.runtime.tracing import Tracer

TRACER = Tracer("router_svc")

REQUESTS = Counter(
    "semcache_requests",
    "Calls the router answered, by method and gRPC status code (OK, INVALID_ARGUMENT, "
    "UNAVAILABLE, ...): what callers saw.",
    ["method", "code"],
)
REQUEST_SECONDS = Histogram(
    "semcache_request_seconds",
    "Time the router took to answer a call, forwarding and failover included (a stream: "
    "until its last message), by method.",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RING_CHANGES = Counter("semcache_ring_changes", "Shards leaving or joining the ring.", ["change"])
HEALTHY_SHARDS = Gauge("semcache_ring_healthy_shards", "Shards in the ring.")
EJECTIONS = Counter(
    "semcache_shard_ejections",
    "Shards taken out of the ring because their health checks timed out (frozen); calls "
    "waiting on them went elsewhere.",
)
REGISTRY_READABLE = Gauge(
    "semcache_registry_readable", "1 when the last read of the membership registry succeeded."
)
