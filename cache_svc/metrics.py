"""Prometheus metrics of a cache shard, and its tracer (`semcache.runtime.tracing`)."""

from prometheus_client import Counter, Gauge, Histogram

from semcache.runtime.tracing import Tracer

TRACER = Tracer("cache_svc")

LOOKUPS = Counter(
    "semcache_lookups",
    "Lookups by result (hit, miss, bypass) and kind (exact, semantic, none).",
    ["result", "kind"],
)
BEST_SIMILARITY = Histogram(
    "semcache_best_similarity",
    "Cosine similarity of the nearest cached prompt, per semantic lookup.",
    buckets=(0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99, 1.0),
)
STAGE_SECONDS = Histogram(
    "semcache_stage_seconds",
    "Time spent per request stage.",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
ENTRIES = Gauge("semcache_entries", "Entries held in memory.")
NAMESPACES = Gauge("semcache_namespaces", "Namespaces held in memory.")
BYTES = Gauge("semcache_bytes", "Approximate bytes held by entries.")
EVICTIONS = Counter("semcache_evictions", "Entries evicted, by reason.", ["reason"])
COALESCED = Counter("semcache_coalesced_misses", "Misses answered by a concurrent identical miss.")
LLM_CALLS = Counter("semcache_llm_calls", "Upstream LLM calls by outcome.", ["outcome"])
WRONG_HITS = Counter("semcache_wrong_hits", "Hits reported wrong through Feedback.")
REDIS_UP = Gauge("semcache_redis_up", "1 when Redis accepts writes.")
REDIS_BACKLOG = Gauge("semcache_redis_backlog", "Writes queued while Redis is away.")
REDIS_ERRORS = Counter("semcache_redis_errors", "Failed Redis operations.")
REDIS_DROPPED = Counter("semcache_redis_dropped_writes", "Writes dropped: the backlog was full.")
REDIS_WRITTEN_BACK = Counter(
    "semcache_redis_written_back", "Entries written to Redis again because it came back empty."
)
EMBEDDER_ERRORS = Counter("semcache_embedder_errors", "Failed embedder calls.")
STALLS = Counter(
    "semcache_shard_stalls",
    "Times the shard's process stood still long enough "
    "to drop its namespaces from memory (cache_svc/stall.py).",
)
EMBEDDER_CIRCUIT_OPEN = Gauge(
    "semcache_embedder_circuit_open",
    "1 while the embedder's circuit is open (or probing): lookups do not wait for it.",
)
EMBEDDER_CIRCUIT_OPENED = Counter(
    "semcache_embedder_circuit_opened", "Times the embedder's circuit opened."
)
EMBEDDER_REFUSED = Counter(
    "semcache_embedder_refused",
    "Texts not sent to the embedder because its circuit was open (the lookup degraded at once).",
)
VECTOR_CACHE = Counter(
    "semcache_vector_cache",
    "Texts looked up in the shard's cache of recent vectors, by result (hit: no embedder call).",
    ["result"],
)
REEMBEDDED = Counter(
    "semcache_reembedded", "Stored prompts re-embedded because the embedding model changed."
)
REEMBED_PENDING = Gauge(
    "semcache_reembed_pending",
    "Stored prompts (in memory) whose vectors are not of the embedders' current model yet.",
)
