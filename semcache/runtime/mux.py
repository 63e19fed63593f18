"""Many callers' requests over one long-lived bidirectional gRPC call, answered by id.

The mesh's internal hops (router to shard, shard to embedder) carry a request per caller at
a high rate. On loopback a Python gRPC unary call took 0.52 ms and 0.55 ms of CPU (client
and server) where a message on a call already open took 0.30 ms and 0.32 ms; at 32
concurrent callers, 0.30 against 0.18 ms of CPU a request (`python -m bench transport`).
So those hops keep one stream open instead: each request message carries an `id`, each
answer echoes it, answers come back in the order they finish.

- `MuxStream` (client): `send(request)` sets the id and returns a future of the answer;
  one writer task sends (a call takes one write at a time), one reader resolves futures.
  When the call ends, whatever is pending fails with `StreamClosedError`.
- `RenewingStream` (client): the current `MuxStream`, replaced when it ends and every
  `max_age` seconds, so a channel's load balancing still sees new calls and no stream
  outlives a server's connection age limit; what an old stream carries still comes back.
- `serve_stream` (server): answers each request concurrently and writes answers back as
  they are ready, with a bound on what one stream may have pending.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import grpc

log = logging.getLogger(__name__)

#: Requests of one stream being answered or waiting to be written back; past it the server
#: stops reading, and HTTP/2 flow control holds back a caller that sends without reading.
MAX_PENDING = 1024
#: A bulk Import stream's entries being stored at once (router and shard alike): enough to
#: keep the embedder's batches full, few enough that one importer cannot crowd out calls.
IMPORT_WINDOW = 256


_CLOSING = object()  # in a server's answer queue: the server is stopping


class StreamClosedError(Exception):
    """The stream ended before the request was answered."""


class MuxStream:
    """One open call. Requests and answers are protobuf messages with an `id` field."""

    def __init__(self, call: grpc.aio.StreamStreamCall) -> None:
        self.opened = time.monotonic()
        self._call = call
        self._queued: deque[tuple[Any, asyncio.Future[Any] | None]] = deque()
        self._sent: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._finishing = False
        self.error: str | None = None
        self._writer = asyncio.create_task(self._write(), name="mux-writer")
        self._reader = asyncio.create_task(self._read(), name="mux-reader")

    @property
    def usable(self) -> bool:
        """Takes new requests: neither ended nor finishing."""
        return self.error is None and not self._finishing and not self._reader.done()

    @property
    def ended(self) -> bool:
        return self._reader.done()

    def send(self, request: Any) -> tuple[int, asyncio.Future[Any]]:
        """Queues `request` (its id set here); returns the id and a future of the answer."""
        if not self.usable:
            raise StreamClosedError(self.error or "the stream is finishing")
        request.id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((request, future))
        self._wake.set()
        return request.id, future

    def post(self, request: Any) -> None:
        """Queues a request that gets no answer (a cancellation, say); dropped if closed."""
        if self.error is None:
            self._queued.append((request, None))
            self._wake.set()

    def finish(self) -> None:
        """No new requests; what is queued is still sent and answered, then the call ends."""
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
                    request, future = self._queued.popleft()
                    if future is not None:
                        if future.done():  # the caller gave up before it was sent
                            continue
                        self._sent[request.id] = future
                    await self._call.write(request)
                if self._finishing:
                    await self._call.done_writing()
                    return
        except grpc.aio.AioRpcError as e:  # the call ended under the write
            self._fail(f"{e.code().name}: {e.details()}")
            self._call.cancel()
        except (grpc.aio.UsageError, asyncio.InvalidStateError) as e:  # closed locally
            self._fail(f"write failed: {e!r}")
            self._call.cancel()

    async def _read(self) -> None:
        reason = "the server ended the stream"
        try:
            async for reply in self._call:
                future = self._sent.pop(reply.id, None)
                if future is not None and not future.done():
                    future.set_result(reply)
        except grpc.aio.AioRpcError as e:
            reason = f"{e.code().name}: {e.details()}"
        except asyncio.CancelledError:  # (also how grpc ends a call its channel closed)
            reason = "the call was cancelled"
            raise
        finally:
            self._fail(reason)

    def _fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        futures = [f for _, f in self._queued if f is not None] + list(self._sent.values())
        self._queued.clear()
        self._sent.clear()
        for future in futures:
            if not future.done():  # (a caller that gave up cancelled its future: done)
                future.set_exception(StreamClosedError(self.error))
        if asyncio.current_task() is not self._writer:
            self._writer.cancel()


#: How long a client keeps one stream. A server with a connection age limit sends GOAWAY
#: and cuts the streams still open after its grace period (`grace_seconds`, 10 s for the
#: embedder in deploy/k8s): a stream younger than that grace when GOAWAY comes has ended by
#: the cut, and its successor goes to the new connection.
STREAM_MAX_AGE_SECONDS = 5.0


class RenewingStream:
    """The current `MuxStream` of `open_call()`, renewed when it ends or ages past `max_age`."""

    def __init__(
        self,
        open_call: Callable[[], grpc.aio.StreamStreamCall],
        max_age: float = STREAM_MAX_AGE_SECONDS,
    ) -> None:
        self._open_call = open_call
        self.max_age = max_age
        self._stream: MuxStream | None = None
        self._finishing: set[MuxStream] = set()

    def current(self) -> MuxStream:
        stream = self._stream
        if stream is not None and stream.usable:
            if time.monotonic() - stream.opened < self.max_age:
                return stream
            stream.finish()  # what it carries still comes back
            self._finishing.add(stream)
        self._finishing = {s for s in self._finishing if not s.ended}
        self._stream = MuxStream(self._open_call())
        return self._stream

    def finish(self) -> None:
        """Lets the current stream's requests finish; the next `current()` opens a new one."""
        if self._stream is not None:
            self._stream.finish()
            self._finishing.add(self._stream)
            self._stream = None

    async def aclose(self) -> None:
        streams = [*self._finishing, *([self._stream] if self._stream else [])]
        self._stream, self._finishing = None, set()
        await asyncio.gather(*(s.aclose() for s in streams))


async def serve_stream(
    requests: AsyncIterator[Any],
    context: grpc.aio.ServicerContext,
    answer: Callable[[Any], Coroutine[Any, Any, Any]],
    *,
    cancelled: Callable[[Any], bool] = lambda request: False,
    closing: asyncio.Event | None = None,
    max_pending: int = MAX_PENDING,
) -> None:
    """A stream handler's body: `answer(request)` (which returns the answer message with the
    request's id, errors included: one that raises leaves its request unanswered, logged)
    runs concurrently for each request; answers are
    written as they are ready. A request for which `cancelled(request)` holds cancels the
    work on its id instead. Ends when the caller is done writing and all are answered, or
    once `closing` is set (the server is stopping): then what was taken is answered, and the
    caller's next requests go to a new call, which a stopping server refuses."""
    answers: asyncio.Queue[Any] = asyncio.Queue()
    slots = asyncio.Semaphore(max_pending)
    running: dict[int, asyncio.Task[None]] = {}

    def start(request: Any) -> None:
        task = asyncio.create_task(answer(request))
        running[request.id] = task

        def finished(task: asyncio.Task[Any]) -> None:  # however it ended, even unstarted
            if running.get(request.id) is task:
                del running[request.id]
            if not task.cancelled() and task.exception() is None:
                answers.put_nowait(task.result())
                return
            slots.release()  # no answer to write
            if not task.cancelled():
                log.error("a stream request failed unanswered", exc_info=task.exception())

        task.add_done_callback(finished)

    async def read() -> None:
        try:
            async for request in requests:
                if cancelled(request):
                    if (task := running.get(request.id)) is not None:
                        task.cancel()
                    continue
                await slots.acquire()
                start(request)
            while running:
                await asyncio.wait(set(running.values()))
        finally:
            answers.put_nowait(None)  # the caller is done writing, or gone

    reader = asyncio.create_task(read())
    watcher = None
    if closing is not None:
        watcher = asyncio.create_task(closing.wait())
        watcher.add_done_callback(lambda _: answers.put_nowait(_CLOSING))
    try:
        while (response := await answers.get()) is not None:
            if response is _CLOSING:
                reader.cancel()  # take no more requests; answer those taken
                while running:
                    await asyncio.wait(set(running.values()))
                while not answers.empty():
                    if (response := answers.get_nowait()) not in (None, _CLOSING):
                        await context.write(response)
                return
            await context.write(response)
            slots.release()
    finally:
        for task in (reader, *([watcher] if watcher else []), *running.values()):
            task.cancel()
