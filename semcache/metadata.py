"""gRPC metadata and statuses the services exchange (and the SDK reads)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc

_BY_VALUE = {status.value[0]: status for status in grpc.StatusCode}


def status_code(value: int) -> grpc.StatusCode:
    """The StatusCode of its integer value, as a message carries it (UNKNOWN for a value
    gRPC does not define)."""
    return _BY_VALUE.get(value, grpc.StatusCode.UNKNOWN)


#: Trailing metadata on an error that came from the LLM upstream, not from the shard: the
#: router passes such an error on instead of failing over to another shard.
UPSTREAM_ERROR = ("semcache-error", "upstream")
#: Trailing metadata beside UPSTREAM_ERROR, each present when the upstream said it: its
#: HTTP status ("0": no answer), its error's `type`, `code` and `param` (OpenAI's error
#: body), and its Retry-After header as it was sent.
_FIELDS = {
    "status": "semcache-upstream-status",
    "type": "semcache-upstream-type",
    "code": "semcache-upstream-code",
    "param": "semcache-upstream-param",
    "retry_after": "retry-after",
}


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """How the LLM upstream failed a call: what a caller needs to react as it would to the
    upstream itself (back off for `retry_after`, fix `param`)."""

    status: int  # its HTTP status; 0 when it did not answer
    type: str = ""
    code: str = ""
    param: str = ""
    retry_after: str = ""  # seconds or an HTTP date, as the upstream sent it

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The trailing metadata that marks an error as the upstream's."""
        pairs = [UPSTREAM_ERROR, (_FIELDS["status"], str(self.status))]
        for name in ("type", "code", "param", "retry_after"):
            if value := getattr(self, name):
                pairs.append((_FIELDS[name], _printable(value)))
        return tuple(pairs)

    @classmethod
    def from_metadata(
        cls, trailing: Iterable[tuple[str, str | bytes]] | None
    ) -> UpstreamFailure | None:
        """The upstream's failure that trailing metadata carries, or None when the error is
        not the upstream's."""
        pairs = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in trailing or ()]
        if UPSTREAM_ERROR not in pairs:
            return None
        values = dict(pairs)
        status = values.get(_FIELDS["status"], "0")
        return cls(
            status=int(status) if status.isdigit() else 0,
            type=values.get(_FIELDS["type"], ""),
            code=values.get(_FIELDS["code"], ""),
            param=values.get(_FIELDS["param"], ""),
            retry_after=values.get(_FIELDS["retry_after"], ""),
        )


def _printable(value: str) -> str:
    """A metadata value gRPC accepts: printable ASCII (anything else escaped)."""
    escaped = value.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if " " <= c <= "~" else repr(c)[1:-1] for c in escaped)
