"""The circuit breaker's states, on a clock the test moves."""

from __future__ import annotations

import pytest

from semcache.runtime.breaker import CircuitBreaker


def test_opens_after_failures_in_a_row_only() -> None:
    breaker = CircuitBreaker(failures_to_open=3, open_seconds=1.0)
    breaker.failed(0.0)
    breaker.failed(0.1)
    breaker.succeeded()  # a success in between: the count starts again
    breaker.failed(0.2)
    breaker.failed(0.3)
    assert breaker.closed
    breaker.failed(0.4)
    assert breaker.state == "open" and breaker.times_opened == 1


def test_one_probe_per_open_period_and_its_answer_decides() -> None:
    breaker = CircuitBreaker(failures_to_open=1, open_seconds=1.0, max_open_seconds=3.0)
    breaker.failed(10.0)
    assert not breaker.probe_due(10.9)
    assert breaker.probe_due(11.0) and breaker.state == "half_open"
    assert not breaker.probe_due(11.0)  # one probe at a time
    breaker.failed(11.5)  # the probe failed: open again, for twice as long
    assert breaker.state == "open" and not breaker.probe_due(13.4)
    assert breaker.probe_due(13.5)
    breaker.failed(14.0)  # 4 s would be next, but the cap is 3 s
    assert not breaker.probe_due(16.9) and breaker.probe_due(17.0)
    breaker.succeeded()
    assert breaker.closed and breaker.times_opened == 1
    breaker.failed(20.0)  # a new outage starts from open_seconds again
    assert breaker.probe_due(21.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"failures_to_open": 0}, "failures_to_open must be at least 1"),
        ({"open_seconds": 0.0}, "need 0 < open_seconds"),
        ({"open_seconds": 5.0, "max_open_seconds": 2.0}, "need 0 < open_seconds"),
    ],
)
def test_bad_settings_say_what_is_wrong(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(**settings)
