"""A circuit breaker: a dependency that failed several times in a row is not asked for a while.

A frozen dependency (a GC or CPU stall, SIGSTOP, a black-holed connection) answers nothing,
so every call to it waits its whole timeout, and callers pile up behind it. Behind a
breaker only the first `failures_to_open` calls wait; then the circuit is *open* and calls
fail at once, so the caller takes its degraded path (for a shard: exact match only, and
Complete straight to the LLM) at full speed. After `open_seconds` one probe is due
(*half-open*): the caller runs it, in the background rather than on a user's request, and
its answer closes the circuit or opens it again for twice as long (up to
`max_open_seconds`), so a long outage costs few probes.

Pure logic: the caller passes the clock (`time.monotonic()`) and reports each outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass
class CircuitBreaker:
    failures_to_open: int = 3
    open_seconds: float = 1.0
    max_open_seconds: float = 16.0
    state: State = "closed"
    #: Failures since the last success.
    consecutive_failures: int = 0
    #: How many times the circuit opened (from closed; a failed probe is not counted).
    times_opened: int = 0
    _open_for: float = field(default=0.0, repr=False)
    _probe_at: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.failures_to_open < 1:
            raise ValueError(f"failures_to_open must be at least 1, not {self.failures_to_open}")
        if not 0 < self.open_seconds <= self.max_open_seconds:
            raise ValueError(
                f"need 0 < open_seconds <= max_open_seconds, not {self.open_seconds} and "
                f"{self.max_open_seconds}"
            )
        self._open_for = self.open_seconds

    @property
    def closed(self) -> bool:
        """Calls may go through."""
        return self.state == "closed"

    def probe_due(self, now: float) -> bool:
        """True once per open period, when it has passed: the caller should now send one
        probe and report its outcome (the circuit is half-open until then)."""
        if self.state == "open" and now >= self._probe_at:
            self.state = "half_open"
            return True
        return False

    def succeeded(self) -> None:
        self.state = "closed"
        self.consecutive_failures = 0
        self._open_for = self.open_seconds

    def failed(self, now: float) -> None:
        self.consecutive_failures += 1
        if self.state == "half_open":
            self._open_for = min(2 * self._open_for, self.max_open_seconds)
            self._open(now)
        elif self.state == "closed" and self.consecutive_failures >= self.failures_to_open:
            self.times_opened += 1
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = "open"
        self._probe_at = now + self._open_for
