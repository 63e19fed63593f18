"""The asyncio client."""

# `timeout` parameters on coroutines are deliberate: each is the gRPC deadline sent to the
# server and shared by the retries, which `asyncio.timeout` around a call cannot express.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Self, TypeVar, Unpack

import grpc

from semcache import bulk
from semcache.client.errors import (
    InvalidRequestError,
    SemcacheError,
    UnavailableError,
    from_rpc_error,
    from_status,
    is_upstream,
)
from semcache.client.options import DEFAULT_ADDRESS, ClientOptions, Settings
from semcache.client.requests import ScopeArgs, control_message, scope_message
from semcache.client.results import Completion, Imported, Ring, Stats, Stored
from semcache.client.streams import AsyncCompletionStream
from semcache.metadata import status_code
from semcache.v1 import cache_pb2, cache_pb2_grpc

T = TypeVar("T")


class AsyncClient:
    """The semcache client for asyncio code; talks to a router (or a single shard).

    Options (`ClientOptions`): `token`, `tenant`, `timeout`, `retries`/`backoff`/
    `max_backoff` or `retry`, `credentials`. `channel`: a `grpc.aio` channel to use instead
    of opening one to `address` (it is then the caller's to close).

    Use as `async with AsyncClient(...) as cache:` or call `await cache.aclose()`. Make it
    inside the event loop that uses it (a `grpc.aio` channel belongs to one loop).
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        channel: grpc.aio.Channel | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        settings = Settings.of(options)
        self.address = address
        self.tenant = settings.tenant
        self.timeout = settings.timeout
        self.retry = settings.retry
        self._metadata = (("authorization", f"Bearer {settings.token}"),) if settings.token else ()
        self._owns_channel = channel is None
        self._channel = channel or settings.open_channel(address)
        self._cache = cache_pb2_grpc.SemanticCacheStub(self._channel)
        self._admin = cache_pb2_grpc.AdminStub(self._channel)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the channel (unless it was given to the constructor)."""
        if self._owns_channel:
            await self._channel.close()

    # The calls ---------------------------------------------------------------------------

    async def lookup(
        self,
        prompt: str,
        *,
        category: str = "",
        min_similarity: float | None = None,
        no_cache: bool = False,
        max_age: int | None = None,
        timeout: float | None = None,
        **scope: Unpack[ScopeArgs],
    ) -> Completion:
        """Looks `prompt` up without calling the LLM; `text` is None on a miss.

        `min_similarity` can only make the hit policy stricter (cosine, in [-1, 1]);
        `max_age` (seconds) accepts only younger entries; `category` picks the policy's
        threshold (detected when empty).
        """
        request = cache_pb2.LookupRequest(
            scope=scope_message(self.tenant, **scope),
            prompt=prompt,
            category=category,
            min_similarity=min_similarity,
            cache_control=control_message(no_cache, max_age=max_age),
        )
        return Completion.from_proto(await self._unary(self._cache.Lookup, request, timeout))

    async def store(
        self,
        prompt: str,
        answer: str,
        *,
        ttl: int | None = None,
        category: str = "",
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **scope: Unpack[ScopeArgs],
    ) -> Stored:
        """Stores `answer` for `prompt` (look-aside: your code made the LLM call).

        `ttl` (seconds) defaults to the shard's; `metadata` is opaque data kept with the
        entry and returned with it on hits.
        """
        request = cache_pb2.StoreRequest(
            scope=scope_message(self.tenant, **scope),
            prompt=prompt,
            category=category,
            answer=cache_pb2.Answer(text=answer, metadata=metadata or {}),
            ttl_seconds=ttl,
        )
        return Stored.from_proto(await self._unary(self._cache.Store, request, timeout))

    async def complete(
        self,
        prompt: str,
        *,
        category: str = "",
        min_similarity: float | None = None,
        no_cache: bool = False,
        no_store: bool = False,
        max_age: int | None = None,
        ttl: int | None = None,
        timeout: float | None = None,
        **scope: Unpack[ScopeArgs],
    ) -> Completion:
        """Read-through: the cached answer, or on a miss the LLM's (stored unless
        `no_store`). `no_cache` skips the lookup; `ttl` is the stored entry's lifetime."""
        request = self._complete_request(
            prompt, category, min_similarity, no_cache, no_store, max_age, ttl, scope
        )
        return Completion.from_proto(await self._unary(self._cache.Complete, request, timeout))

    async def stream_complete(
        self,
        prompt: str,
        *,
        category: str = "",
        min_similarity: float | None = None,
        no_cache: bool = False,
        no_store: bool = False,
        max_age: int | None = None,
        ttl: int | None = None,
        timeout: float | None = None,
        **scope: Unpack[ScopeArgs],
    ) -> AsyncCompletionStream:
        """`complete`, streamed. Returns once the cache has decided (hit or miss), with
        `.cache` set; iterate it for the text deltas:

            stream = await cache.stream_complete("Explain DNS")
            print(stream.cache.status)
            async for delta in stream:
                print(delta, end="")
            print(stream.finish_reason, stream.usage, stream.cache.entry_id)

        After the last delta `.cache` is the final CacheInfo (timings, the stored entry),
        and `.finish_reason` and `.usage` are set. The timeout covers the whole stream.
        """
        request = self._complete_request(
            prompt, category, min_similarity, no_cache, no_store, max_age, ttl, scope
        )

        async def open_stream(remaining: float | None) -> AsyncCompletionStream:
            call = self._cache.StreamComplete(request, timeout=remaining, metadata=self._metadata)
            try:
                first = await call.read()
            except BaseException:
                call.cancel()
                raise
            if first is grpc.aio.EOF:
                raise SemcacheError(
                    grpc.StatusCode.INTERNAL, "the stream ended empty", address=self.address
                )
            return AsyncCompletionStream(self, call, first)

        return await self._with_retries(open_stream, timeout)

    async def import_entries(
        self,
        entries: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        *,
        window: int = 128,
    ) -> AsyncIterator[Imported]:
        """Stores entries in the bulk format (`semcache.bulk`) on one Import stream, at
        most `window` in flight; yields each one's `Imported` as its answer comes (not in
        input order: see `index`). An entry the client cannot read, or the server refuses,
        comes back with its `error`; the others go on. Storing what is stored already
        changes nothing (`Stored.unchanged`), so a run cut short can simply run again.
        Raises SemcacheError when the stream itself fails."""
        if window < 1:
            raise ValueError("window: at least 1")
        call = self._cache.Import(metadata=self._metadata)
        results: asyncio.Queue[Imported | None] = asyncio.Queue()
        slots = asyncio.Semaphore(window)
        unanswered = 0  # sent, not answered yet

        async def send() -> None:
            nonlocal unanswered
            index = 0
            async for entry in _each(entries):
                try:
                    store = bulk.store_request(entry, self.tenant)
                except bulk.EntryFormatError as e:
                    error = InvalidRequestError(grpc.StatusCode.INVALID_ARGUMENT, str(e))
                    results.put_nowait(Imported(index, None, error))
                else:
                    await slots.acquire()
                    unanswered += 1
                    await call.write(cache_pb2.ImportRequest(id=index + 1, store=store))
                index += 1
            await call.done_writing()

        async def receive() -> None:
            nonlocal unanswered
            async for answer in call:
                unanswered -= 1
                slots.release()
                results.put_nowait(self._imported(answer))

        sender = asyncio.create_task(send())
        receiver = asyncio.create_task(receive())
        # The answers end after the last request's; a sender that fails (the entries
        # could not be read) ends them too.
        receiver.add_done_callback(lambda _: results.put_nowait(None))
        sender.add_done_callback(lambda t: t.cancelled() or (t.exception() and call.cancel()))
        try:
            while (result := await results.get()) is not None:
                yield result
            failed = sender.exception() if sender.done() and not sender.cancelled() else None
            if failed is not None and not isinstance(failed, grpc.RpcError | grpc.aio.UsageError):
                raise failed  # the caller's entries, not the call
            await receiver  # the call's own failure, if it failed
            if unanswered or not sender.done():
                raise UnavailableError(
                    grpc.StatusCode.UNAVAILABLE,
                    "the import stream ended before every entry was answered",
                    address=self.address,
                )
        except grpc.aio.AioRpcError as e:
            raise self._error(e, 1, before_reply=False) from None
        finally:
            for task in (sender, receiver):
                task.cancel()
            call.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)

    def _imported(self, answer: cache_pb2.ImportResponse) -> Imported:
        if answer.HasField("error"):
            code = status_code(answer.error.code)
            error = from_status(code, answer.error.message, address=self.address)
            return Imported(answer.id - 1, None, error)
        return Imported(answer.id - 1, Stored.from_proto(answer.store))

    async def export(
        self,
        *,
        tenant: str | None = None,
        namespace: str = "",
        all_tenants: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every stored entry of `tenant` (the client's by default), of one `namespace`
        of it, or of every tenant (`all_tenants`: operator tokens only), in the bulk format
        (`semcache.bulk`), as the mesh streams them. Raises SemcacheError when the export
        cannot be whole (a shard or its Redis down): it never ends early silently."""
        request = cache_pb2.ExportRequest(
            tenant=self.tenant if tenant is None else tenant,
            namespace=namespace,
            all_tenants=all_tenants,
        )
        call = self._cache.Export(request, timeout=timeout, metadata=self._metadata)
        try:
            async for batch in call:
                for exported in batch.entries:
                    yield bulk.entry_of(exported)
        except grpc.aio.AioRpcError as e:
            raise self._error(e, 1, before_reply=False) from None
        finally:
            call.cancel()

    async def invalidate(
        self,
        *,
        entry_id: str | None = None,
        namespace: bool = False,
        tenant_wide: bool = False,
        timeout: float | None = None,
        **scope: Unpack[ScopeArgs],
    ) -> int:
        """Removes entries; returns how many. Exactly one target: `entry_id` (one entry),
        `namespace=True` (every entry of the scope's namespace) or `tenant_wide=True` (every
        entry of the scope's tenant, in every namespace)."""
        if (entry_id is not None) + namespace + tenant_wide != 1:
            raise ValueError(
                "invalidate: give exactly one of entry_id, namespace=True, tenant_wide=True"
            )
        targets = cache_pb2.InvalidateRequest
        target = (
            targets.TARGET_ENTRY
            if entry_id is not None
            else targets.TARGET_NAMESPACE
            if namespace
            else targets.TARGET_TENANT
        )
        request = cache_pb2.InvalidateRequest(
            target=target, scope=scope_message(self.tenant, **scope), entry_id=entry_id or ""
        )
        return (await self._unary(self._cache.Invalidate, request, timeout)).removed

    async def feedback(
        self,
        entry_id: str,
        *,
        wrong: bool,
        prompt: str = "",
        timeout: float | None = None,
        **scope: Unpack[ScopeArgs],
    ) -> bool:
        """Reports how the hit on `entry_id` turned out; `wrong=True` removes the entry
        everywhere. `prompt` is the prompt it answered (kept for calibration). Returns
        whether the entry was removed."""
        verdicts = cache_pb2.FeedbackRequest
        request = cache_pb2.FeedbackRequest(
            scope=scope_message(self.tenant, **scope),
            entry_id=entry_id,
            prompt=prompt,
            verdict=verdicts.VERDICT_WRONG_HIT if wrong else verdicts.VERDICT_CORRECT_HIT,
        )
        return (await self._unary(self._cache.Feedback, request, timeout)).removed

    async def stats(self, *, timeout: float | None = None) -> Stats:
        """Every shard's counters, and their total."""
        return Stats.from_proto(
            await self._unary(self._admin.Stats, cache_pb2.StatsRequest(), timeout)
        )

    async def ring(self, *, timeout: float | None = None, **scope: Unpack[ScopeArgs]) -> Ring:
        """The router's ring; with any scope keyword also the scope's namespace and its
        owners in failover order."""
        request = cache_pb2.RingRequest()
        if scope:
            request.scope.CopyFrom(scope_message(self.tenant, **scope))
        return Ring.from_proto(await self._unary(self._admin.Ring, request, timeout))

    # Plumbing ----------------------------------------------------------------------------

    def _complete_request(
        self,
        prompt: str,
        category: str,
        min_similarity: float | None,
        no_cache: bool,
        no_store: bool,
        max_age: int | None,
        ttl: int | None,
        scope: ScopeArgs,
    ) -> cache_pb2.CompleteRequest:
        return cache_pb2.CompleteRequest(
            scope=scope_message(self.tenant, **scope),
            prompt=prompt,
            category=category,
            min_similarity=min_similarity,
            cache_control=control_message(no_cache, no_store, max_age, ttl),
        )

    def _deadline(self, timeout: float | None) -> float | None:
        timeout = self.timeout if timeout is None else timeout
        return None if timeout is None else time.monotonic() + timeout

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        return None if deadline is None else max(deadline - time.monotonic(), 0.0)

    def _error(
        self, error: grpc.aio.AioRpcError, attempts: int, before_reply: bool
    ) -> SemcacheError:
        # UNAVAILABLE from a server that answered leaves the channel READY; a refused or
        # broken connection does not.
        unreachable = (
            before_reply
            and error.code() == grpc.StatusCode.UNAVAILABLE
            and not is_upstream(error)
            and self._channel.get_state() != grpc.ChannelConnectivity.READY
        )
        return from_rpc_error(
            error, address=self.address, unreachable=unreachable, attempts=attempts
        )

    async def _with_retries(
        self, attempt: Callable[[float | None], Awaitable[T]], timeout: float | None
    ) -> T:
        """`attempt(seconds left)` until it succeeds or the retry policy gives up; the
        timeout is one deadline for all attempts together."""
        deadline = self._deadline(timeout)
        tries = 0
        while True:
            try:
                return await attempt(self._remaining(deadline))
            except grpc.aio.AioRpcError as e:
                delay = self.retry.delay(e, tries, deadline)
                if delay is None:
                    raise self._error(e, tries + 1, before_reply=True) from None
            await asyncio.sleep(delay)
            tries += 1

    async def _unary(
        self, method: grpc.aio.UnaryUnaryMultiCallable, request: Any, timeout: float | None
    ) -> Any:
        return await self._with_retries(
            lambda remaining: method(request, timeout=remaining, metadata=self._metadata),
            timeout,
        )


async def _each(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
