"""semcache: a distributed semantic cache for LLM calls."""
