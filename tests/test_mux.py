"""semcache.runtime.mux over a real grpc.aio server on 127.0.0.1:0, with a toy echo of link
messages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from semcache.runtime.mux import MuxStream, StreamClosedError, serve_stream
from semcache.v1 import link_pb2

Answer = Callable[[link_pb2.ForwardRequest], Awaitable[link_pb2.ForwardResponse]]


@contextlib.asynccontextmanager
async def serving(answer: Answer, **options: object) -> AsyncIterator[grpc.aio.Channel]:
    async def forward(
        requests: AsyncIterator[link_pb2.ForwardRequest], context: grpc.aio.ServicerContext
    ) -> None:
        await serve_stream(requests, context, answer, **options)  # type: ignore[arg-type]

    handler = grpc.method_handlers_generic_handler(
        "t.Mux",
        {
            "Forward": grpc.stream_stream_rpc_method_handler(
                forward,
                request_deserializer=link_pb2.ForwardRequest.FromString,
                response_serializer=link_pb2.ForwardResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)


def open_stream(channel: grpc.aio.Channel) -> MuxStream:
    call = channel.stream_stream(
        "/t.Mux/Forward",
        request_serializer=link_pb2.ForwardRequest.SerializeToString,
        response_deserializer=link_pb2.ForwardResponse.FromString,
    )()
    return MuxStream(call)


async def test_answers_find_their_callers_in_any_order() -> None:
    async def answer(request: link_pb2.ForwardRequest) -> link_pb2.ForwardResponse:
        await asyncio.sleep(0.05 * (3 - request.id))  # the first sent answers last
        return link_pb2.ForwardResponse(id=request.id, lookup={"answer": {"text": str(request.id)}})

    async with serving(answer) as channel:
        stream = open_stream(channel)
        futures = [stream.send(link_pb2.ForwardRequest())[1] for _ in range(3)]
        done_order: list[int] = []
        for future in futures:
            future.add_done_callback(lambda f: done_order.append(f.result().id))
        replies = await asyncio.gather(*futures)
        await stream.aclose()
    assert [r.lookup.answer.text for r in replies] == ["1", "2", "3"]
    assert done_order == [3, 2, 1]


async def test_a_channel_closed_under_a_stream_fails_what_it_carries() -> None:
    """(A router retiring a shard closes its channel after a grace: the requests still on the
    stream must fail, as UNAVAILABLE for failover, not wait for their deadlines.)"""

    async def answer(request: link_pb2.ForwardRequest) -> link_pb2.ForwardResponse:
        await asyncio.sleep(30)
        return link_pb2.ForwardResponse(id=request.id)

    async with serving(answer) as channel:
        stream = open_stream(channel)
        _, pending = stream.send(link_pb2.ForwardRequest())
        stream.finish()
        await channel.close(grace=0.1)
        async with asyncio.timeout(5):
            with pytest.raises(StreamClosedError):
                await pending
        assert stream.ended


async def test_an_answer_that_raises_does_not_stall_the_stream() -> None:
    async def answer(request: link_pb2.ForwardRequest) -> link_pb2.ForwardResponse:
        if request.timeout_seconds:
            raise RuntimeError("a bug in one request")
        return link_pb2.ForwardResponse(id=request.id)

    async with serving(answer, max_pending=2) as channel:
        stream = open_stream(channel)
        for _ in range(3):  # more failures than the stream may have pending
            stream.send(link_pb2.ForwardRequest(timeout_seconds=1))
        _, healthy = stream.send(link_pb2.ForwardRequest())
        async with asyncio.timeout(5):
            assert (await healthy).id == 4
        await stream.aclose()
