"""Prometheus metrics of the embedding service, and its tracer (`semcache.runtime.tracing`)."""

from prometheus_client import Counter, Gauge, Histogram

from semcache.runtime.tracing import Tracer

TRACER = Tracer("embed_svc")

BATCH_SIZE = Histogram(
    "semcache_embed_batch_size",
    "Texts per inference batch.",
    buckets=(1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256),
)
QUEUE_WAIT = Histogram(
    "semcache_embed_queue_wait_seconds",
    "Time a text waited in the queue before its batch started.",
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
INFERENCE_SECONDS = Histogram(
    "semcache_embed_inference_seconds",
    "Wall time of one inference batch.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
TEXTS = Counter("semcache_embed_texts", "Texts embedded.")
TOKENS = Counter("semcache_embed_tokens", "Word-piece tokens embedded.")
REJECTED_TEXTS = Counter(
    "semcache_embed_rejected_texts", "Texts refused because the queue was full."
)
QUEUE_DEPTH = Gauge("semcache_embed_queue_depth", "Texts waiting for a batch.")
MODEL_INFO = Gauge(
    "semcache_embed_model",
    "1 for each model the service holds (the current one and, after a switch, the previous).",
    ["model"],
)
