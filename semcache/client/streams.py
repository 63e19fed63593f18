"""Answers arriving in text deltas: `AsyncCompletionStream` and its blocking twin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Self

import grpc

from semcache.client.results import CacheInfo, Usage
from semcache.v1 import cache_pb2

if TYPE_CHECKING:
    from semcache.client.aio import AsyncClient
    from semcache.client.sync import Client


class _StreamProgress:
    """What a stream has told so far; shared by the asyncio and the blocking stream."""

    __slots__ = ("cache", "chunks", "done", "finish_reason", "usage")

    def __init__(self) -> None:
        self.cache: CacheInfo | None = None
        self.chunks: list[str] = []
        self.finish_reason = ""
        self.usage: Usage | None = None
        self.done = False


class _StreamView:
    _progress: _StreamProgress

    @property
    def cache(self) -> CacheInfo:
        """The start chunk's CacheInfo; after the end, the final one."""
        assert self._progress.cache is not None
        return self._progress.cache

    @property
    def hit(self) -> bool:
        return self.cache.status == "hit"

    @property
    def finish_reason(self) -> str:
        """Why the answer ended ("stop", "length", ...); "" until the stream has ended."""
        return self._progress.finish_reason

    @property
    def usage(self) -> Usage | None:
        """Token usage; None until the stream has ended."""
        return self._progress.usage

    @property
    def chunks(self) -> tuple[str, ...]:
        """The deltas received so far."""
        return tuple(self._progress.chunks)

    @property
    def text(self) -> str:
        """The answer text received so far (all of it once `done`)."""
        return "".join(self._progress.chunks)

    @property
    def done(self) -> bool:
        """The stream has ended normally."""
        return self._progress.done


class AsyncCompletionStream(_StreamView, AsyncIterator[str]):
    """An answer arriving in text deltas: `async for delta in stream`. See
    `AsyncClient.stream_complete`. `await stream.aclose()` abandons it early."""

    def __init__(
        self, client: AsyncClient, call: grpc.aio.UnaryStreamCall, first: cache_pb2.CompleteChunk
    ) -> None:
        self._client = client
        self._call = call
        self._progress = _StreamProgress()
        self._pending = self._take(first)

    def _take(self, chunk: cache_pb2.CompleteChunk) -> str | None:
        """Records a chunk; returns its text if it is a delta."""
        match chunk.WhichOneof("event"):
            case "delta":
                self._progress.chunks.append(chunk.delta)
                return chunk.delta
            case "start":
                self._progress.cache = CacheInfo.from_proto(chunk.start)
            case "end":
                end = chunk.end
                self._progress.finish_reason = end.finish_reason
                self._progress.usage = Usage.from_proto(end.usage)
                if end.HasField("cache"):
                    self._progress.cache = CacheInfo.from_proto(end.cache)
        return None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return pending
        while True:
            try:
                chunk = await self._call.read()
            except grpc.aio.AioRpcError as e:
                raise self._client._error(e, 1, before_reply=False) from None
            if chunk is grpc.aio.EOF:
                self._progress.done = True
                raise StopAsyncIteration
            delta = self._take(chunk)
            if delta is not None:
                return delta

    async def aclose(self) -> None:
        """Cancels the call if it is still running."""
        self._call.cancel()


class CompletionStream(_StreamView, Iterator[str]):
    """The blocking `AsyncCompletionStream`: `for delta in stream`, same attributes.
    `stream.close()` (or leaving `with stream:`) abandons it early."""

    def __init__(self, client: Client, stream: AsyncCompletionStream) -> None:
        self._client = client
        self._stream = stream
        self._progress = stream._progress

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> str:
        try:
            return self._client._run(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """Cancels the call if it is still running."""
        self._client._run(self._stream.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
