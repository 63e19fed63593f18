"""gRPC metadata the services exchange."""

#: Trailing metadata on an error that came from the LLM upstream, not from the shard: the
#: router passes such an error on instead of failing over to another shard.
UPSTREAM_ERROR = ("semcache-error", "upstream")
#: Trailing metadata beside UPSTREAM_ERROR: the upstream's HTTP status ("0": no answer), so
#: the HTTP front can pass it on as it was.
UPSTREAM_STATUS = "semcache-upstream-status"
