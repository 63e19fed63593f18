"""Many callers' texts over one `Embedder/EmbedStream` call.

A unary call costs a Python gRPC client and server about twice the latency and three times
the CPU of a message on a call that is already open, and a shard embeds all the time. So a
shard keeps one stream open: callers' texts queue up, one writer sends them (a call takes one
write at a time), one text a request, and one reader hands each answer to its caller. Texts
are not packed into shared requests: an answer would then wait for the slowest text of its
request, and the embedder batches texts from all its requests anyway. When the call ends,
whatever is pending fails with `StreamClosedError` and the owner opens another stream.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque

import grpc
import numpy as np

from semcache.v1 import embedder_pb2, embedder_pb2_grpc


class StreamClosedError(Exception):
    """The stream ended before the text was embedded."""


class EmbedRefusedError(Exception):
    """The embedder answered this request with an error (the stream goes on)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code


_STATUS_BY_VALUE = {status.value[0]: status for status in grpc.StatusCode}


class EmbedStream:
    """One open stream. `embed(text)` returns a future for its vector; `finish()` lets what
    was sent come back and then ends the call; `aclose()` ends it now."""

    def __init__(self, stub: embedder_pb2_grpc.EmbedderStub) -> None:
        self.opened = time.monotonic()
        self._call = stub.EmbedStream()
        self._queued: deque[tuple[str, asyncio.Future[np.ndarray]]] = deque()
        self._sent: dict[int, asyncio.Future[np.ndarray]] = {}
        self._ids = itertools.count()
        self._wake = asyncio.Event()
        self._finishing = False
        self.error: str | None = None
        self._writer = asyncio.create_task(self._write(), name="embed-stream-writer")
        self._reader = asyncio.create_task(self._read(), name="embed-stream-reader")

    @property
    def usable(self) -> bool:
        """Takes new texts: neither ended nor finishing."""
        return self.error is None and not self._finishing and not self._reader.done()

    @property
    def ended(self) -> bool:
        return self._reader.done()

    def embed(self, text: str) -> asyncio.Future[np.ndarray]:
        if not self.usable:
            raise StreamClosedError(self.error or "the stream is finishing")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queued.append((text, future))
        self._wake.set()
        return future

    def finish(self) -> None:
        """No new texts; what is queued is still sent and answered, then the call ends."""
        self._finishing = True
        self._wake.set()

    async def aclose(self) -> None:
        self._fail("the stream was closed")
        self._call.cancel()
        for task in (self._writer, self._reader):
            task.cancel()
        await asyncio.gather(self._writer, self._reader, return_exceptions=True)

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queued:
                    text, future = self._queued.popleft()
                    if future.done():  # the caller gave up
                        continue
                    request_id = next(self._ids)
                    self._sent[request_id] = future
                    request = embedder_pb2.EmbedRequest(texts=[text])
                    await self._call.write(
                        embedder_pb2.EmbedStreamRequest(id=request_id, request=request)
                    )
                if self._finishing:
                    await self._call.done_writing()
                    return
        except grpc.aio.AioRpcError as e:  # the call ended under the write
            self._fail(f"{e.code().name}: {e.details()}")
            self._call.cancel()

    async def _read(self) -> None:
        reason = "the embedder ended the stream"
        try:
            async for reply in self._call:
                self._answer(reply)
        except grpc.aio.AioRpcError as e:
            reason = f"{e.code().name}: {e.details()}"
        self._fail(reason)

    def _answer(self, reply: embedder_pb2.EmbedStreamResponse) -> None:
        future = self._sent.pop(reply.id, None)
        if future is None or future.done():
            return
        if reply.HasField("error"):
            code = _STATUS_BY_VALUE.get(reply.error.code, grpc.StatusCode.UNKNOWN)
            future.set_exception(EmbedRefusedError(code, reply.error.message))
        elif len(reply.response.embeddings) != 1:
            message = f"{len(reply.response.embeddings)} vectors for one text"
            future.set_exception(EmbedRefusedError(grpc.StatusCode.INTERNAL, message))
        else:
            future.set_result(np.frombuffer(reply.response.embeddings[0].vector, dtype="<f4"))

    def _fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        futures = [f for _, f in self._queued] + list(self._sent.values())
        self._queued.clear()
        self._sent.clear()
        for future in futures:
            if not future.done():  # (a caller that gave up cancelled its future: done)
                future.set_exception(StreamClosedError(self.error))
        if asyncio.current_task() is not self._writer:
            self._writer.cancel()
