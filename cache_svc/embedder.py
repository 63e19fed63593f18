"""The shard's client of `semcache.v1.Embedder`, with a small cache of recent vectors.

A prompt that semantically hit is asked again verbatim more often than not (popular
questions), and only the stored prompts are exact-matched: remembering the vectors of recent
texts spares those repeats the embedding call, most of a semantic hit's time.

Every vector comes with the id of the model that made it (vectors of two models are never
compared), and every answer tells the `ModelTracker` which model the embedders serve now.

A frozen embedder costs a caller a bounded wait: each call waits at most the smaller of the
timeout and half of what is left of the caller's deadline (the other half is for the
answer without a vector: exact match, or the LLM), and a circuit breaker stops asking after
a few failures in a row (`semcache.runtime.breaker`), probing in the background until the embedder
answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import grpc
import numpy as np

from cache_svc import metrics
from cache_svc.models import ModelTracker
from semcache.channel import CHANNEL_OPTIONS
from semcache.metadata import status_code
from semcache.runtime import tracing
from semcache.runtime.breaker import CircuitBreaker
from semcache.runtime.mux import STREAM_MAX_AGE_SECONDS, RenewingStream, StreamClosedError
from semcache.runtime.validation import EMBED_TEXT_MAX_BYTES, clipped
from semcache.tls import TlsFiles, open_channel
from semcache.v1 import embedder_pb2, embedder_pb2_grpc

log = logging.getLogger(__name__)


class EmbedderUnavailableError(Exception):
    """The embedder could not embed the text (down, overloaded, too slow, or it refused the
    text)."""


#: What `refresh_models` embeds: any text does, the answer names the current model.
MODEL_PROBE_TEXT = "semcache"
#: Longer texts are not kept: they rarely repeat and would dominate the cache's memory.
MAX_CACHED_CHARS = 2048
#: The share of a caller's remaining deadline an embedding may take.
DEADLINE_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Vector:
    """A text's embedding and the id of the model that made it."""

    values: np.ndarray  # float32, L2-normalised
    model: str


class EmbedderClient:
    """`embed(text, model)` through the embedder; the last `cache_entries` texts' vectors (up
    to MAX_CACHED_CHARS each) are kept, least recently used out first. 0 turns the cache off.

    Texts travel one per request on an `EmbedStream` call (`semcache.runtime.mux`), renewed every
    few seconds: a new call goes to the next embedder the channel's round_robin picks, so a
    stream never pins a shard to one pod. Texts are not packed into shared requests: an
    answer would then wait for the slowest text of its request, and the embedder batches
    texts from all its requests anyway.
    """

    def __init__(
        self,
        address: str,
        timeout: float = 0.5,
        tls: TlsFiles | None = None,
        cache_entries: int = 4096,
        stream_seconds: float = STREAM_MAX_AGE_SECONDS,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.cache_entries = cache_entries
        self.models = ModelTracker()
        self.breaker = breaker or CircuitBreaker()
        self._probe: asyncio.Task[None] | None = None
        self._last_answer = -float("inf")
        self._cache: OrderedDict[tuple[str, str], Vector] = OrderedDict()
        # round_robin: every address the name resolves to (all the pods of a headless
        # Service) takes calls, not only the first.
        options = [*CHANNEL_OPTIONS, ("grpc.lb_policy_name", "round_robin")]
        self._channel = open_channel(address, tls, options)
        stub = embedder_pb2_grpc.EmbedderStub(self._channel)
        self._stream = RenewingStream(stub.EmbedStream, max_age=stream_seconds)
        self.healthy = True

    async def embed(self, text: str, model: str = "", deadline: float | None = None) -> Vector:
        """The text's vector in `model` (empty: the embedder's current model). When no
        embedder holds that model any more, the vector is of another: check `.model`.

        `deadline` is the caller's (a `time.monotonic()` instant): the call takes at most
        DEADLINE_SHARE of what is left of it. EmbedderUnavailableError at once while the
        circuit is open."""
        key = (model or self.models.target(time.monotonic()), text)
        vector = self._cache.get(key)
        if vector is not None:
            self._cache.move_to_end(key)
            metrics.VECTOR_CACHE.labels("hit").inc()
            return vector
        self._check_circuit()
        budget = self.timeout
        if deadline is not None:
            budget = max(0.0, min(budget, DEADLINE_SHARE * (deadline - time.monotonic())))
        vector = await self._fetch(text, model, budget)
        if self.cache_entries and len(text) <= MAX_CACHED_CHARS:
            metrics.VECTOR_CACHE.labels("miss").inc()
            self._cache[(vector.model, text)] = vector
            if len(self._cache) > self.cache_entries:
                self._cache.popitem(last=False)
        return vector

    async def refresh_models(self, quiet_for: float) -> None:
        """Asks the embedder which model is current when no answer came for `quiet_for`
        seconds: an idle shard still learns of a new model (and of each embedder behind its
        address, as its stream moves from one to the next). While the circuit is open, it
        sends the probe when one is due."""
        if not self.breaker.closed:  # an idle shard's circuit closes too
            if self.breaker.probe_due(time.monotonic()):
                await self._run_probe()
        elif self.silent_for() >= quiet_for:
            with contextlib.suppress(EmbedderUnavailableError):
                await self._fetch(MODEL_PROBE_TEXT, "", self.timeout)

    @property
    def state(self) -> str:
        """The embedder as this shard sees it: "up", "down" (the last call failed), or while
        the circuit is not closed "open" (not asked) or "half_open" (a probe is out)."""
        if not self.breaker.closed:
            return self.breaker.state
        return "up" if self.healthy else "down"

    def _check_circuit(self) -> None:
        """Raises at once while the circuit is open, starting the probe when one is due."""
        if self.breaker.closed:
            return
        if self.breaker.probe_due(time.monotonic()):
            self._probe = asyncio.create_task(self._run_probe())
        metrics.EMBEDDER_REFUSED.inc()
        raise EmbedderUnavailableError(
            f"circuit open: the embedder failed {self.breaker.consecutive_failures} calls in "
            "a row; not asked until a background probe answers"
        )

    async def _run_probe(self) -> None:
        try:
            await self._fetch(MODEL_PROBE_TEXT, "", self.timeout)
        except EmbedderUnavailableError:
            pass
        finally:
            if self.breaker.state == "half_open":  # ended without a verdict (cancelled)
                self.breaker.failed(time.monotonic())

    async def _fetch(self, text: str, model: str, budget: float) -> Vector:
        # A prompt longer than an embedder takes (a shard may allow longer ones) gets the
        # vector of its head, all the model would read of it anyway.
        text = clipped(text, EMBED_TEXT_MAX_BYTES)
        request = embedder_pb2.EmbedStreamRequest(
            request=embedder_pb2.EmbedRequest(texts=[text], model=model),
            trace_context=tracing.carrier(),
        )
        try:
            async with asyncio.timeout(budget):
                _, answer = self._stream.current().send(request)
                reply = await answer
        except TimeoutError as e:
            # Only a timeout of the full budget, with nothing answered for as long, says the
            # embedder is stuck. A shorter one says the caller was in a hurry; one while
            # other texts get their vectors says it is busy (a burst of writes queued on
            # it), which opening the circuit would only make worse: the texts queued
            # behind would be stored without vectors, to be embedded again later.
            if budget >= self.timeout and self.silent_for() >= self.timeout:
                self._failed()
                self._stream.finish()  # the next call opens a stream, maybe to another pod
            raise EmbedderUnavailableError(f"no vector within {budget:.3g} s") from e
        except StreamClosedError as e:
            self._failed()
            raise EmbedderUnavailableError(str(e)) from e
        if reply.HasField("error"):
            code = status_code(reply.error.code)
            # A refused text (an embedder configured with lower limits) says nothing of the
            # embedder's health: only its failures count towards opening the circuit.
            if code != grpc.StatusCode.INVALID_ARGUMENT:
                self._failed()
            raise EmbedderUnavailableError(f"{code.name}: {reply.error.message}")
        self.healthy = True
        if not self.breaker.closed:
            log.info("embedder circuit closed", extra={"embedder": self.address})
        self.breaker.succeeded()
        metrics.EMBEDDER_CIRCUIT_OPEN.set(0)
        self._last_answer = time.monotonic()
        response = reply.response
        self.models.observe(
            response.current_model, response.current_model_built, response.model, time.monotonic()
        )
        return Vector(np.frombuffer(response.embeddings[0].vector, dtype="<f4"), response.model)

    def silent_for(self) -> float:
        """Seconds since the embedder last answered this client."""
        return time.monotonic() - self._last_answer

    def _failed(self) -> None:
        metrics.EMBEDDER_ERRORS.inc()
        self.healthy = False
        opened = self.breaker.times_opened
        self.breaker.failed(time.monotonic())
        if self.breaker.times_opened > opened:
            metrics.EMBEDDER_CIRCUIT_OPEN.set(1)
            metrics.EMBEDDER_CIRCUIT_OPENED.inc()
            failures = self.breaker.consecutive_failures
            log.warning(
                "embedder circuit open", extra={"embedder": self.address, "failures": failures}
            )

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self._stream.aclose()
        await self._channel.close()
