"""The blocking client: `AsyncClient` run on a private event loop, one implementation."""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, Unpack

from semcache.client.aio import AsyncClient
from semcache.client.options import DEFAULT_ADDRESS, ClientOptions, Settings
from semcache.client.streams import AsyncCompletionStream, CompletionStream

P = ParamSpec("P")
R = TypeVar("R")


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Client, P], R]:
    """`AsyncClient.method` as a blocking `Client` method (same signature and docstring)."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run(method(self._async, *args, **kwargs))

    return call


def _blocking_stream(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, AsyncCompletionStream]],
) -> Callable[Concatenate[Client, P], CompletionStream]:
    """`AsyncClient.stream_complete` as a blocking method returning a `CompletionStream`."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> CompletionStream:
        return CompletionStream(self, self._run(method(self._async, *args, **kwargs)))

    call.__signature__ = inspect.signature(method).replace(  # type: ignore[attr-defined]
        return_annotation="CompletionStream"
    )
    call.__doc__ = """`complete`, streamed. Returns once the cache has decided (hit or miss), with
        `.cache` set; iterate it for the text deltas:

            with cache.stream_complete("Explain DNS") as stream:
                for delta in stream:
                    print(delta, end="")
            print(stream.finish_reason, stream.usage, stream.cache.entry_id)

        Same arguments as `AsyncClient.stream_complete`."""
    return call


def _blocking_iterator(
    method: Callable[Concatenate[AsyncClient, P], AsyncIterator[R]],
) -> Callable[Concatenate[Client, P], Iterator[R]]:
    """`AsyncClient.method`, an async generator, as a blocking method returning an iterator
    (same signature and docstring): each item is fetched on the client's loop when asked
    for, and leaving the loop early (or closing the iterator) ends the call."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
        return self._iterate(method(self._async, *args, **kwargs))

    signature = inspect.signature(method)
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        return_annotation=str(signature.return_annotation).replace("AsyncIterator", "Iterator")
    )
    return call


async def _next(items: AsyncIterator[R], turn: asyncio.Lock) -> list[R]:
    """[the next item], or [] at the end: `run_coroutine_threadsafe` takes coroutines only,
    and StopAsyncIteration must not cross threads as an error."""
    async with turn:
        try:
            return [await anext(items)]
        except StopAsyncIteration:
            return []


async def _close(items: AsyncIterator[R], turn: asyncio.Lock) -> None:
    async with turn:
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()


class Client:
    """The blocking semcache client: `AsyncClient`'s methods with the same signatures and
    results, run on a private event loop in a daemon thread. Thread-safe.

    Use as `with Client(...) as cache:` or call `cache.close()`. The constructor takes
    `AsyncClient`'s options (`ClientOptions`) but no `channel` (a `grpc.aio` channel belongs
    to one loop).
    Do not call it from a coroutine running the servers it talks to: it blocks that loop.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, **options: Unpack[ClientOptions]) -> None:
        Settings.of(options)  # unknown options (`channel` among them) fail here, at once
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="semcache-client", daemon=True
        )
        self._thread.start()
        self._closed = False

        async def make() -> AsyncClient:  # the grpc.aio channel must be made on its loop
            return AsyncClient(address, **options)

        try:
            self._async = self._run(make())
        except BaseException:
            self._stop_loop()
            raise

    @property
    def address(self) -> str:
        return self._async.address

    @property
    def tenant(self) -> str:
        return self._async.tenant

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel and stops the private loop. Idempotent."""
        if self._closed:
            return
        try:
            self._run(self._async.aclose())
        finally:
            self._closed = True
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        if self._closed or threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError(
                "the client is closed"
                if self._closed
                else "a blocking Client call on its own loop would deadlock"
            )
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt while waiting; a no-op once done
            raise

    def _iterate(self, items: AsyncIterator[R]) -> Iterator[R]:
        # Each step and the closing hold one lock: a step cancelled under the caller
        # (Ctrl-C) finishes its clean-up before the close begins.
        turn = asyncio.Lock()
        try:
            while got := self._run(_next(items, turn)):
                yield got[0]
        finally:
            # Not at interpreter exit (an iterator collected then): the loop's thread is
            # stopped for good, and waiting on it would hang the exit.
            if not self._closed and not sys.is_finalizing():
                self._run(_close(items, turn))

    lookup = _blocking(AsyncClient.lookup)
    store = _blocking(AsyncClient.store)
    complete = _blocking(AsyncClient.complete)
    invalidate = _blocking(AsyncClient.invalidate)
    feedback = _blocking(AsyncClient.feedback)
    stats = _blocking(AsyncClient.stats)
    ring = _blocking(AsyncClient.ring)

    stream_complete = _blocking_stream(AsyncClient.stream_complete)
    import_entries = _blocking_iterator(AsyncClient.import_entries)
    export = _blocking_iterator(AsyncClient.export)
