"""`CallError`: the one form a failed call takes on every hop."""

from __future__ import annotations

import grpc

from semcache.metadata import UpstreamFailure, status_code
from semcache.runtime.status import CallError, grpc_for_http


def test_an_upstream_error_survives_the_trip_through_trailing_metadata() -> None:
    sent = CallError.from_upstream(UpstreamFailure(429), "slow down")
    assert sent.code == grpc.StatusCode.RESOURCE_EXHAUSTED and sent.upstream
    back = CallError.from_metadata(sent.code, sent.message, sent.trailing_metadata())
    assert (back.code, back.message, back.upstream_status) == (sent.code, "slow down", 429)
    assert back.http() == (429, "upstream_error") and not back.server_down


def test_only_the_caches_own_unavailable_means_another_shard_may_serve() -> None:
    down = CallError(grpc.StatusCode.UNAVAILABLE, "shard stopping")
    assert down.server_down and not down.trailing_metadata()
    assert down.http() == (503, "service_unavailable")
    silent = CallError.from_upstream(UpstreamFailure(0), "the LLM did not answer")
    assert silent.code == grpc.StatusCode.UNAVAILABLE and not silent.server_down
    assert silent.http() == (502, "upstream_error")
    assert CallError(grpc.StatusCode.INTERNAL, "bug").http() == (500, "api_error")


def test_status_values_and_http_statuses_map_to_grpc_codes() -> None:
    assert status_code(grpc.StatusCode.NOT_FOUND.value[0]) == grpc.StatusCode.NOT_FOUND
    assert status_code(999) == grpc.StatusCode.UNKNOWN
    assert grpc_for_http(400) == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_for_http(500) == grpc.StatusCode.UNAVAILABLE
