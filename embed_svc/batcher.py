"""One micro-batcher shared by every caller of the embedder.

Texts from all concurrent calls wait in one FIFO queue. Whenever an inference worker is
free, it takes what is queued (up to a batch limit by count and by padded tokens) and runs
it on that worker, off the event loop, as a few padded runs of texts of similar length
(`split_by_length`). While the workers are busy the queue fills, so batches grow with load
without any idle wait; at low load a text runs alone, at once. The queue is bounded: beyond
it, callers are refused, never left hanging.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from embed_svc import metrics
from embed_svc.model import EmbeddingModel, Tokens

#: Up to this many characters in a call are tokenized on the event loop.
INLINE_TOKENIZE_CHARS = 2048


class QueueFullError(Exception):
    """The batcher's queue cannot take more texts; try again later."""


class BatcherClosedError(Exception):
    """The batcher was closed before the text was embedded."""


@dataclass(frozen=True, slots=True)
class Embedded:
    vector: np.ndarray  # float32, L2-normalised
    token_count: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_texts: int = 32
    #: Rows x longest row: what a padded batch really costs.
    max_padded_tokens: int = 4096

    def __post_init__(self) -> None:
        if self.max_texts < 1 or self.max_padded_tokens < 1:
            raise ValueError(f"batch limits must be positive: {self}")


def batch_size(token_counts: Sequence[int], limits: BatchLimits) -> int:
    """How many of the queued texts, taken in order, form the next batch (at least one).

    A batch stops before the text that would push it past `max_texts`, or past
    `max_padded_tokens` once padded to its longest text. One text always fits, however long.
    """
    longest = 0
    for n, count in enumerate(token_counts[: limits.max_texts]):
        longest = max(longest, count)
        if n > 0 and (n + 1) * longest > limits.max_padded_tokens:
            return n
    return min(len(token_counts), limits.max_texts)


#: What one onnxruntime run costs beyond its padded tokens (rows x longest row), counted in
#: padded tokens. `python -m bench embed` fits it ("run_cost"): 5.5 to 8.4 tokens between
#: runs on the 2-core Xeon (0.34-0.46 ms fixed, 0.055-0.062 ms a padded token), and batches
#: of chat prompts ran about equally fast with anything from 4 to 12 here.
RUN_OVERHEAD_TOKENS = 6


def split_by_length(
    token_counts: Sequence[int], overhead: int = RUN_OVERHEAD_TOKENS
) -> list[list[int]]:
    """How to run a batch: groups of indexes into `token_counts`, each group one padded run,
    chosen to minimise the sum over runs of `overhead` + rows x longest row.

    A batch padded to its longest text makes a short text pay for the long one's length (and
    shifts its int8 activations); a run per text pays the fixed cost every time. The best
    groups are runs of neighbours in length order (dynamic programming over the sorted
    lengths, O(n^2) for n <= a batch's 32 texts).
    """
    order = sorted(range(len(token_counts)), key=lambda i: token_counts[i])
    lengths = [token_counts[i] for i in order]
    best = [0] + [0] * len(lengths)  # best[j]: cheapest cost of the first j texts
    start = [0] * (len(lengths) + 1)  # where the last group of that cheapest way begins
    for j in range(1, len(lengths) + 1):
        best[j], start[j] = min(
            (best[i] + overhead + (j - i) * lengths[j - 1], i) for i in range(j)
        )
    groups: list[list[int]] = []
    j = len(lengths)
    while j > 0:
        groups.append(order[start[j] : j])
        j = start[j]
    return groups[::-1]


def run_in_groups(model: EmbeddingModel, batch: list[Tokens]) -> np.ndarray:
    """Embeds a batch as `split_by_length` groups it; rows in the batch's order. Blocking."""
    groups = split_by_length([t.count for t in batch])
    if len(groups) == 1:
        return model.run(batch)
    vectors = np.empty((len(batch), model.dimension), dtype=np.float32)
    for group in groups:
        vectors[group] = model.run([batch[i] for i in group])
    return vectors


@dataclass(slots=True)
class _Pending:
    tokens: Tokens
    future: asyncio.Future[np.ndarray]
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Embeds texts for many concurrent callers in shared batches.

    Use as an async context manager, or call `start()` and `aclose()`.
    """

    def __init__(
        self,
        model: EmbeddingModel,
        *,
        limits: BatchLimits | None = None,
        workers: int = 2,
        max_queue: int = 4096,
        max_wait: float = 0.0,
    ) -> None:
        if workers < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("workers and max_queue must be >= 1, max_wait >= 0")
        self._model = model
        self.limits = limits or BatchLimits()
        self.max_queue = max_queue
        self.max_wait = max_wait
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._queue: deque[_Pending] = deque()
        self._reserved = 0  # texts admitted and not yet embedded (tokenizing or queued)
        self._idle = workers
        self._fill_timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> MicroBatcher:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="embed")

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None  # no new batches from here on
        if self._fill_timer is not None:
            self._fill_timer.cancel()
            self._fill_timer = None
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(BatcherClosedError("embedder is shutting down"))
        if pool is not None:
            # Let running batches finish (they deliver through the loop) without blocking it.
            await asyncio.to_thread(pool.shutdown, wait=True)

    @property
    def queued(self) -> int:
        """Texts admitted and not yet embedded (being tokenized, waiting or running)."""
        return self._reserved

    @property
    def waiting(self) -> int:
        """Texts tokenized and waiting for a batch."""
        return len(self._queue)

    async def embed(self, texts: list[str]) -> list[Embedded]:
        """Embeds `texts`, batched with whatever else is queued. Raises QueueFullError."""
        if self._pool is None:
            raise BatcherClosedError("batcher is not running")
        if self._reserved + len(texts) > self.max_queue:
            metrics.REJECTED_TEXTS.inc(len(texts))
            raise QueueFullError(
                f"embedding queue full ({self._reserved} queued, limit {self.max_queue})"
            )
        self._reserved += len(texts)
        try:
            if sum(len(t) for t in texts) <= INLINE_TOKENIZE_CHARS:
                tokens = self._model.tokenize(texts)  # ~0.1 ms: cheaper than a thread hop
            else:
                tokens = await asyncio.to_thread(self._model.tokenize, texts)
                if self._pool is None:  # closed meanwhile: nothing would run these
                    raise BatcherClosedError("embedder is shutting down")
            loop = asyncio.get_running_loop()
            pending = [_Pending(t, loop.create_future()) for t in tokens]
            self._queue.extend(pending)
            metrics.QUEUE_DEPTH.set(len(self._queue))
            self._dispatch()
            vectors = await asyncio.gather(*(p.future for p in pending))
        finally:
            self._reserved -= len(texts)
        metrics.TEXTS.inc(len(texts))
        metrics.TOKENS.inc(sum(t.count for t in tokens))
        return [
            Embedded(vector=v, token_count=t.count, truncated=t.truncated)
            for v, t in zip(vectors, tokens, strict=True)
        ]

    def _dispatch(self, *, filled: bool = False) -> None:
        """Starts batches on idle workers while texts wait. Runs when texts arrive and when a
        worker frees up, so a text meeting an idle worker starts at once, on this turn."""
        while self._idle and self._queue and self._pool is not None:
            if self.max_wait and not filled and len(self._queue) < self.limits.max_texts:
                if self._fill_timer is None:  # give the batch `max_wait` to fill, once
                    loop = asyncio.get_running_loop()
                    self._fill_timer = loop.call_later(self.max_wait, self._filled)
                return
            if self._fill_timer is not None:
                self._fill_timer.cancel()
                self._fill_timer = None
            batch = self._take_batch()
            if batch:
                self._idle -= 1
                self._run(batch)

    def _filled(self) -> None:
        self._fill_timer = None
        self._dispatch(filled=True)

    def _take_batch(self) -> list[_Pending]:
        # Callers that gave up (cancelled) leave their texts behind: drop them unrun.
        live = [p for p in self._queue if not p.future.done()]
        self._queue = deque(live)
        n = batch_size([p.tokens.count for p in live], self.limits)
        batch = [self._queue.popleft() for _ in range(n)]
        metrics.QUEUE_DEPTH.set(len(self._queue))
        return batch

    def _run(self, batch: list[_Pending]) -> None:
        assert self._pool is not None
        started = time.perf_counter()
        for pending in batch:
            metrics.QUEUE_WAIT.observe(started - pending.enqueued)
        metrics.BATCH_SIZE.observe(len(batch))
        loop = asyncio.get_running_loop()
        tokens = [p.tokens for p in batch]
        inference = loop.run_in_executor(self._pool, run_in_groups, self._model, tokens)

        def deliver(done: asyncio.Future[np.ndarray]) -> None:
            self._idle += 1
            metrics.INFERENCE_SECONDS.observe(time.perf_counter() - started)
            error = done.exception()
            for row, pending in enumerate(batch):
                if pending.future.done():
                    continue
                if error is not None:
                    pending.future.set_exception(error)
                else:
                    pending.future.set_result(done.result()[row])
            self._dispatch()  # what queued meanwhile

        inference.add_done_callback(deliver)
