"""gRPC metadata the services exchange (and the SDK reads)."""

from __future__ import annotations

from collections.abc import Iterable

#: Trailing metadata on an error that came from the LLM upstream, not from the shard: the
#: router passes such an error on instead of failing over to another shard.
UPSTREAM_ERROR = ("semcache-error", "upstream")
#: Trailing metadata beside UPSTREAM_ERROR: the upstream's HTTP status ("0": no answer), so
#: the HTTP front can pass it on as it was.
UPSTREAM_STATUS = "semcache-upstream-status"


def upstream_status(trailing: Iterable[tuple[str, str | bytes]] | None) -> int | None:
    """The LLM upstream's HTTP status that trailing metadata carries (0: it did not
    answer), or None when the error is not the upstream's."""
    pairs = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in trailing or ()]
    if UPSTREAM_ERROR not in pairs:
        return None
    status = dict(pairs).get(UPSTREAM_STATUS, "0")
    return int(status) if status.isdigit() else 0


def upstream_metadata(status: int) -> tuple[tuple[str, str], ...]:
    """The trailing metadata that marks an error as the upstream's, with its status."""
    return (UPSTREAM_ERROR, (UPSTREAM_STATUS, str(status)))
