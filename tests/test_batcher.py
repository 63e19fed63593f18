"""MicroBatcher: batch sizing (pure) and shared batching with the real model."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from embed_svc.batcher import (
    BatchLimits,
    MicroBatcher,
    QueueFullError,
    batch_size,
    split_by_length,
)
from tests.conftest import GatedModel, eventually


def test_batch_size_stops_at_count_limit() -> None:
    assert batch_size([5] * 100, BatchLimits(max_texts=32, max_padded_tokens=10_000)) == 32


def test_batch_size_counts_padding_to_the_longest() -> None:
    # 3 rows padded to 100 tokens = 300 > 250: the long third text starts the next batch.
    assert batch_size([10, 10, 100, 10], BatchLimits(max_texts=32, max_padded_tokens=250)) == 2


def test_one_text_always_fits_however_long() -> None:
    assert batch_size([256, 10], BatchLimits(max_texts=32, max_padded_tokens=100)) == 1


@given(
    counts=st.lists(st.integers(1, 256), min_size=1, max_size=100),
    max_texts=st.integers(1, 64),
    max_tokens=st.integers(1, 8192),
)
def test_batch_size_respects_limits(counts: list[int], max_texts: int, max_tokens: int) -> None:
    limits = BatchLimits(max_texts=max_texts, max_padded_tokens=max_tokens)
    n = batch_size(counts, limits)
    assert 1 <= n <= min(len(counts), max_texts)
    if n > 1:
        assert n * max(counts[:n]) <= max_tokens
    if n < min(len(counts), max_texts):  # it stopped early: one more would not have fitted
        assert (n + 1) * max(counts[: n + 1]) > max_tokens


def run_cost(counts: list[int], groups: list[list[int]], overhead: int) -> int:
    return sum(overhead + len(g) * max(counts[i] for i in g) for g in groups)


def test_texts_of_one_length_run_as_one_batch() -> None:
    assert split_by_length([12, 12, 12, 12]) == [[0, 1, 2, 3]]


def test_short_texts_do_not_pay_for_a_long_ones_padding() -> None:
    groups = split_by_length([10, 200, 11, 9], overhead=8)
    assert groups == [[3, 0, 2], [1]]  # 8 + 3 x 11 + 8 + 200, not 8 + 4 x 200


def test_a_run_per_text_when_the_fixed_cost_is_nothing() -> None:
    assert sorted(map(len, split_by_length([5, 9, 14], overhead=0))) == [1, 1, 1]


def partitions(items: list[int]) -> itertools.chain[list[list[int]]]:
    """Every way to cut `items` into groups (brute force, for small lists)."""
    if len(items) == 1:
        return itertools.chain([[items]])
    first, rest = items[0], items[1:]

    def ways() -> itertools.chain[list[list[int]]]:
        for smaller in partitions(rest):
            yield [[first], *smaller]
            for k in range(len(smaller)):
                yield [*smaller[:k], [first, *smaller[k]], *smaller[k + 1 :]]

    return itertools.chain(ways())


@given(
    counts=st.lists(st.integers(1, 256), min_size=1, max_size=7),
    overhead=st.integers(0, 40),
)
def test_split_by_length_is_the_cheapest_of_all_groupings(counts: list[int], overhead: int) -> None:
    groups = split_by_length(counts, overhead)
    assert sorted(i for g in groups for i in g) == list(range(len(counts)))
    cheapest = min(run_cost(counts, p, overhead) for p in partitions(list(range(len(counts)))))
    assert run_cost(counts, groups, overhead) == cheapest


async def test_a_batch_runs_in_groups_of_similar_length_and_keeps_its_order(model) -> None:
    gated = GatedModel(model)
    gated.gate.set()
    texts = ["short one", "word " * 150, "another short one", "tiny", "term " * 150]
    async with MicroBatcher(gated, workers=1) as batcher:
        embedded = await batcher.embed(texts)
    assert sorted(gated.batches) == [2, 3]  # the two long texts, the three short ones
    alone = np.concatenate([model.embed([text]) for text in texts])
    got = np.stack([e.vector for e in embedded])
    assert list((got @ alone.T).argmax(axis=1)) == [0, 1, 2, 3, 4]  # each row its own text


async def test_waiting_callers_share_one_batch(model) -> None:
    gated = GatedModel(model)
    async with MicroBatcher(gated, workers=1) as batcher:
        first = asyncio.create_task(batcher.embed(["the first caller"]))
        await eventually(lambda: bool(gated.batches))  # the one worker waits on the gate
        texts = [f"caller number {i} asks a question" for i in range(20)]
        others = [asyncio.create_task(batcher.embed([t])) for t in texts]
        await eventually(lambda: batcher.waiting == 20)
        gated.gate.set()
        await first
        results = await asyncio.gather(*others)
    assert gated.batches == [1, 20]
    alone = model.embed(texts)
    for (embedded,), expected in zip(results, alone, strict=True):
        assert float(embedded.vector @ expected) > 0.98


async def test_full_queue_refuses_at_once_then_recovers(model) -> None:
    gated = GatedModel(model)
    async with MicroBatcher(gated, workers=1, max_queue=8) as batcher:
        held = asyncio.create_task(batcher.embed([f"text {i}" for i in range(8)]))
        await eventually(lambda: bool(gated.batches))
        with pytest.raises(QueueFullError, match="limit 8"):
            await batcher.embed(["one more"])
        gated.gate.set()
        assert len(await held) == 8
        (after,) = await batcher.embed(["one more"])
    assert after.vector.shape == (model.dimension,)


async def test_a_cancelled_caller_does_not_disturb_the_others(model) -> None:
    gated = GatedModel(model)
    async with MicroBatcher(gated, workers=1) as batcher:
        first = asyncio.create_task(batcher.embed(["blocks the worker"]))
        await eventually(lambda: bool(gated.batches))
        doomed = asyncio.create_task(batcher.embed(["this caller gives up"]))
        kept = asyncio.create_task(batcher.embed(["this caller waits"]))
        await eventually(lambda: batcher.waiting == 2)
        doomed.cancel()
        gated.gate.set()
        await first
        (result,) = await kept
    assert gated.batches == [1, 1]  # the cancelled text was dropped, not run
    assert np.isclose(np.linalg.norm(result.vector), 1.0, atol=1e-3)
    assert batcher.queued == 0


async def test_long_texts_are_truncated_and_flagged(model) -> None:
    async with MicroBatcher(model) as batcher:
        long, short = await batcher.embed(["word " * 1000, "a short question"])
    assert long.truncated and long.token_count == model.max_tokens
    assert not short.truncated and short.token_count < 10


async def test_max_wait_lets_a_batch_fill(model) -> None:
    gated = GatedModel(model)
    gated.gate.set()
    async with MicroBatcher(gated, workers=1, max_wait=0.5) as batcher:
        await asyncio.gather(batcher.embed(["the first text"]), batcher.embed(["company"]))
    assert gated.batches == [2]  # without the wait, the first would have run alone


async def test_a_full_batch_does_not_wait(model) -> None:
    gated = GatedModel(model)
    gated.gate.set()
    limits = BatchLimits(max_texts=2)
    async with MicroBatcher(gated, workers=1, max_wait=60, limits=limits) as batcher:
        async with asyncio.timeout(10):
            await asyncio.gather(batcher.embed(["one"]), batcher.embed(["two"]))
    assert gated.batches == [2]
