"""cache_svc: the cache shard."""
