"""`semcache eval`: pair loading, the split, the metrics and both protocols on hand-made
vectors, then end to end with the real embedder (API and CLI)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from semcache.dev.probe import free_port
from semcache.evaluation import data, metrics, report
from semcache.evaluation.data import Pair, PairsError
from semcache.evaluation.embeddings import EmbeddingError, TextVectors, VectorCache, embed_texts
from semcache.evaluation.plot import PlotError, plot_report
from semcache.quality.policy import Decision, HitPolicy

ROOT = Path(__file__).parent.parent
PAIRS = ROOT / "tests" / "data" / "pairs.jsonl"


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def at_angle(cosine: float) -> np.ndarray:
    """A 2-d unit vector whose cosine with (1, 0) is `cosine`."""
    return np.array([cosine, math.sqrt(1 - cosine**2)], dtype=np.float32)


def text_vectors(by_text: dict[str, np.ndarray]) -> TextVectors:
    return TextVectors(list(by_text), np.stack(list(by_text.values())), model="test")


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEMCACHE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --- loading and splitting ----------------------------------------------------------------


def test_load_pairs(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"a": "x", "b": "y", "label": 1, "kind": "paraphrase"}\n'
        "\n"
        '{"a": "x", "b": "z", "label": 0, "category": "code", "score": 1.5}\n'
        '{"a": "w", "b": "v", "label": 0}\n',
        encoding="utf-8",
    )
    assert data.load_pairs(path) == [
        Pair("x", "y", 1, kind="paraphrase"),
        Pair("x", "z", 0, category="code"),
        Pair("w", "v", 0),
    ]
    assert len(data.load_pairs(path, limit=2)) == 2


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"a": "x", "b": "y", "label": 1', "not JSON"),
        ('["x", "y", 1]', "expected a JSON object, got list"),
        ('{"b": "y", "label": 1}', "'a' must be a non-empty string"),
        ('{"a": "x", "b": "  ", "label": 1}', "'b' must be a non-empty string"),
        ('{"a": "x", "b": "y"}', "'label' must be 0 or 1, got None"),
        ('{"a": "x", "b": "y", "label": 2}', "'label' must be 0 or 1, got 2"),
        ('{"a": "x", "b": "y", "label": "1"}', "'label' must be 0 or 1, got '1'"),
        ('{"a": "x", "b": "y", "label": 1, "kind": 3}', "'kind' must be a string when given"),
    ],
)
def test_load_pairs_names_the_bad_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"a": "x", "b": "y", "label": 1}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(PairsError, match=f"p.jsonl:3: .*{problem}".replace("[", r"\[")):
        data.load_pairs(path)


def test_load_pairs_without_pairs(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(PairsError, match=r"empty.jsonl: no pairs"):
        data.load_pairs(tmp_path / "empty.jsonl")
    with pytest.raises(PairsError, match=r"missing.jsonl: No such file"):
        data.load_pairs(tmp_path / "missing.jsonl")


def test_split_is_deterministic_grouped_by_a_and_about_a_fifth() -> None:
    pairs = [
        Pair(f"question {i}", f"variant {i}.{j}", j % 2) for i in range(1000) for j in range(3)
    ]
    fit, test = data.split(pairs)
    assert (fit, test) == data.split(list(pairs))
    assert len(fit) + len(test) == len(pairs)
    test_a, fit_a = {p.a for p in test}, {p.a for p in fit}
    assert not test_a & fit_a  # no `a` on both sides
    assert all(sum(p.a == a for p in test) == 3 for a in list(test_a)[:20])
    assert 0.17 < len(test_a) / 1000 < 0.23
    assert data.select(pairs, "test") == test
    assert data.select(pairs, "all") == pairs
    # Another seed is another split.
    assert data.split(pairs, seed="other")[1] != test


# --- metrics on hand-made vectors ---------------------------------------------------------


def test_pair_metrics_counts() -> None:
    hit = np.array([1, 1, 1, 0, 0, 0, 1], dtype=bool)
    label = np.array([1, 1, 0, 1, 0, 0, 0], dtype=bool)
    kinds = np.array(
        ["paraphrase", "paraphrase", "negation", "paraphrase", "number", "unrelated", "unrelated"],
        dtype=object,
    )
    m = metrics.pair_metrics(hit, label, kinds)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 2, 1, 2)
    assert m["precision"] == 0.5
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert m["accuracy"] == pytest.approx(4 / 7)
    assert m["false_positive_rate"] == 0.5
    # Traps: the negation (hit) and the number (missed); unrelated pairs are not traps.
    assert m["traps_blocked"] == 0.5
    assert m["paraphrases_kept"] == m["recall"]
    nothing = metrics.pair_metrics(np.zeros(3, bool), np.zeros(3, bool))
    assert nothing["precision"] is None and nothing["recall"] is None


def test_stream_metrics_counts() -> None:
    hit = np.array([1, 1, 1, 0, 1], dtype=bool)
    right = np.array([1, 0, 0, 1, 1], dtype=bool)
    label = np.array([1, 1, 0, 1, 0], dtype=bool)
    m = metrics.stream_metrics(hit, right, label)
    assert (m["hits"], m["correct_hits"], m["wrong_hits"]) == (4, 2, 2)
    assert m["hit_rate"] == 0.8
    assert m["recall"] == pytest.approx(1 / 3)  # only the first true duplicate hit right
    assert m["precision"] == 0.5
    assert m["wrong_hit_rate"] == 0.4


def test_pairs_protocol_on_known_cosines() -> None:
    cosines = {"p1": 0.97, "p2": 0.91, "p3": 0.85, "n1": 0.93, "n2": 0.80}
    vectors = text_vectors(
        {"anchor": np.array([1, 0], dtype=np.float32)}
        | {name: at_angle(c) for name, c in cosines.items()}
    )
    pairs = [Pair("anchor", name, int(name.startswith("p"))) for name in cosines]
    result = metrics.evaluate_pairs(pairs, vectors, HitPolicy.static(0.9))
    policy = result["policy"]
    assert (policy["tp"], policy["fp"], policy["fn"], policy["tn"]) == (2, 1, 1, 1)
    assert policy["threshold"] == 0.9
    by_threshold = {r["threshold"]: r for r in result["sweep"]}
    assert [r["threshold"] for r in result["sweep"]] == [round(0.5 + i / 100, 2) for i in range(50)]
    assert by_threshold[0.5]["recall"] == 1.0 and by_threshold[0.5]["fp"] == 2
    assert by_threshold[0.94]["recall"] == pytest.approx(1 / 3)
    # A static policy at 0.9 is the sweep's 0.90 row.
    assert {k: by_threshold[0.9][k] for k in ("tp", "fp", "fn", "tn")} == {
        k: policy[k] for k in ("tp", "fp", "fn", "tn")
    }
    # Same recall (2/3): the highest threshold that keeps it is 0.91.
    comparison = result["comparison"]
    assert comparison["static_threshold"] == 0.91 and comparison["matched"]
    assert comparison["metric"] == "false_positive_rate"
    assert comparison["ratio"] == 1.0


def test_stream_protocol_on_known_vectors() -> None:
    vectors = text_vectors(
        {
            "A1": unit(1, 0, 0),
            "A2": unit(0, 1, 0),
            "q-dup-A1": unit(1, 0.2, 0),  # duplicate of A1, nearest A1: right
            "q-dup-A2": unit(1, 0.5, 0),  # duplicate of A2, but nearest A1: wrong
            "q-trap": unit(1, 0.3, 0),  # not a duplicate of A2; nearest A1: wrong
            "q-far": unit(0, 0, 1),  # nothing like anything: below every threshold
        }
    )
    pairs = [
        Pair("A1", "q-dup-A1", 1),
        Pair("A2", "q-dup-A2", 1),
        Pair("A2", "q-trap", 0),
        Pair("A2", "q-far", 0),
        Pair("A1", "A2", 0),  # the query is the cached A2 itself: an exact hit, right
    ]
    result = metrics.evaluate_stream(pairs, vectors, HitPolicy.static(0.9))
    assert result["entries"] == 2 and result["queries"] == 5
    assert result["retrieval"] == {"distinct_queries": 5, "exact": 1, "top1_right": 0.5}
    policy = result["policy"]
    # cosines with A1: q-dup-A1 0.981, q-dup-A2 0.894, q-trap 0.958; A2 with itself 1.0.
    assert (policy["hits"], policy["correct_hits"], policy["wrong_hits"]) == (3, 2, 1)
    assert policy["recall"] == 0.5
    assert policy["wrong_hit_rate"] == pytest.approx(1 / 5)
    at = {r["threshold"]: r for r in result["sweep"]}
    assert (at[0.85]["hits"], at[0.85]["wrong_hits"]) == (4, 2)
    assert (at[0.97]["hits"], at[0.97]["wrong_hits"]) == (2, 0)


@dataclass
class RecordingPolicy:
    """Hits above 0.5, remembering what it was asked."""

    calls: list[tuple[str, str, float, float | None, str]]

    def decide(
        self,
        query: str,
        cached: str,
        similarity: float,
        *,
        second: float | None = None,
        category: str = "",
        tenant: str = "",
        min_similarity: float | None = None,
    ) -> Decision:
        self.calls.append((query, cached, similarity, second, category))
        guard = "" if similarity >= 0.5 else "low"
        return Decision(similarity >= 0.5, 0.5, category or "default", guard)


def test_the_policy_is_asked_with_query_cached_second_and_category() -> None:
    vectors = text_vectors({"a1": unit(1, 0), "a2": unit(0, 1), "b": unit(1, 0.1)})
    pairs = [Pair("a1", "b", 1, category="code"), Pair("a2", "b", 0)]
    policy = RecordingPolicy([])
    result = metrics.evaluate_pairs(pairs, vectors, policy)  # type: ignore[arg-type]
    assert [(q, c, s is not None, sec, cat) for q, c, s, sec, cat in policy.calls] == [
        ("b", "a1", True, None, "code"),
        ("b", "a2", True, None, ""),
    ]
    assert result["policy"]["guards"] == {"low": 1}
    assert result["policy"]["categories"] == {"code": 1, "default": 1}
    policy.calls.clear()
    metrics.evaluate_stream(pairs, vectors, policy)  # type: ignore[arg-type]
    (q, cached, similarity, second, _), _ = policy.calls
    assert (q, cached) == ("b", "a1")  # both queries are "b": its best candidate
    assert similarity == pytest.approx(float(unit(1, 0.1)[0]), abs=1e-6)
    assert second == pytest.approx(float(unit(1, 0.1)[1]), abs=1e-6)


def test_nearest_is_exact_and_chunked() -> None:
    rng = np.random.default_rng(7)
    entries = rng.normal(size=(50, 8)).astype(np.float32)
    entries /= np.linalg.norm(entries, axis=1, keepdims=True)
    queries = rng.normal(size=(23, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    best, best_sim, second = metrics.nearest(entries, queries, chunk=4)
    sims = queries @ entries.T
    ranked = np.sort(sims, axis=1)
    assert (best == sims.argmax(axis=1)).all()
    assert np.allclose(best_sim, ranked[:, -1], atol=1e-6)
    assert np.allclose(second, ranked[:, -2], atol=1e-6)
    _, _, alone = metrics.nearest(entries[:1], queries)
    assert np.isnan(alone).all()


def test_report_table_and_plot(tmp_path: Path) -> None:
    vectors = text_vectors({"a": unit(1, 0), "b": at_angle(0.93), "c": at_angle(0.6)})
    pairs = [Pair("a", "b", 1, kind="paraphrase"), Pair("a", "c", 0, kind="negation")]
    result = report.report(
        pairs=pairs,
        vectors=vectors,
        policy=HitPolicy.static(0.8),
        protocol="pairs",
        policy_name="static 0.8",
        data="x/p.jsonl",
    )
    table = report.format_table(result)
    assert "policy static 0.8" in table and "static *" in table
    assert result.policy["by_kind"]["negation"] == {
        "queries": 1,
        "positives": 0,
        "hits": 0,
        "hits_positive": 0,
        "hits_negative": 0,
    }
    json.dumps(result.to_json(), allow_nan=False)  # strict JSON: no NaN anywhere
    plot_report(result, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_plot_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = text_vectors({"a": unit(1, 0), "b": at_angle(0.93)})
    result = report.report(
        pairs=[Pair("a", "b", 1)], vectors=vectors, policy=HitPolicy.static(0.9), protocol="pairs"
    )
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(PlotError, match=r"pip install 'semcache\[eval\]'"):
        plot_report(result, tmp_path / "p.png")


# --- the vector cache ---------------------------------------------------------------------


def test_vector_cache_by_model_and_text(cache_dir: Path) -> None:
    cache = VectorCache.for_model("m/1")
    assert cache.directory == cache_dir / "embeddings" / "m_1"
    digests = [bytes([i]) * 16 for i in range(4)]
    stored = np.arange(8, dtype=np.float32).reshape(4, 2)
    cache.add(digests[:2], stored[:2])
    cache.add(digests[2:3], stored[2:3])
    vectors, found = cache.lookup([digests[3], digests[2], digests[0]])
    assert found.tolist() == [False, True, True]
    assert vectors is not None
    assert vectors[1:].tolist() == [stored[2].tolist(), stored[0].tolist()]
    _, elsewhere = VectorCache.for_model("m2").lookup(digests)
    assert not elsewhere.any()


# --- with the real embedder ---------------------------------------------------------------


async def test_embed_texts_dedupes_and_caches(embedder_address: str, cache_dir: Path) -> None:
    texts = ["How do I reset my password?", "How can I reset my password?"]
    first = await embed_texts([*texts, texts[0]], embedder_address)
    assert first.texts == texts and first.from_cache == 0
    assert first.vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(first.vectors, axis=1), 1.0, atol=1e-3)
    assert (cache_dir / "embeddings" / first.model).is_dir()
    again = await embed_texts([texts[1], "Where is my order?"], embedder_address)
    assert again.from_cache == 1
    assert np.array_equal(again.of([texts[1]]), first.of([texts[1]]))


async def test_embed_texts_errors(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        await embed_texts(["fine", "  "], "127.0.0.1:1")
    with pytest.raises(EmbeddingError, match="UNAVAILABLE"):
        await embed_texts(["fine"], f"127.0.0.1:{free_port()}")


@pytest.mark.parametrize("protocol", ["pairs", "stream"])
async def test_protocols_end_to_end(embedder_address: str, cache_dir: Path, protocol: str) -> None:
    pairs = data.load_pairs(PAIRS)
    vectors = await embed_texts(data.texts_of(pairs), embedder_address)
    result = report.report(
        pairs=pairs,
        vectors=vectors,
        policy=HitPolicy.static(0.9),
        protocol=protocol,
        policy_name="static 0.9",
        data=str(PAIRS),
    ).to_json()
    assert result["schema"] == 1 and result["protocol"] == protocol
    assert result["pairs"] == result["queries"] == len(pairs) == 180
    assert result["model"] == vectors.model
    assert {"name", "recall", "precision", "hit_rate", "by_kind", "traps_blocked"} <= set(
        result["policy"]
    )
    assert set(result["comparison"]) >= {"static_threshold", "policy", "static", "ratio"}
    json.dumps(result, allow_nan=False)
    at = {r["threshold"]: r for r in result["sweep"]}
    recalls = [r["recall"] for r in result["sweep"]]
    assert recalls == sorted(recalls, reverse=True)  # a higher threshold never finds more
    assert at[0.5]["recall"] >= at[0.9]["recall"]
    assert at[0.5]["recall"] > 0.9  # paraphrases are close to their originals
    assert result["policy"]["recall"] == at[0.9]["recall"]  # static 0.9 is the 0.90 row
    if protocol == "stream":
        assert result["entries"] == len({p.a for p in pairs})
        assert result["retrieval"]["top1_right"] > 0.9
        assert at[0.5]["wrong_hit_rate"] >= at[0.9]["wrong_hit_rate"]
    else:
        assert set(result["policy"]["by_kind"]) == {p.kind for p in pairs}
        assert at[0.5]["fp"] >= at[0.9]["fp"]


async def test_cli(embedder_address: str, tmp_path: Path) -> None:
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    argv = [
        sys.executable,
        "-m",
        "semcache.cli",
        "eval",
        "--pairs",
        str(PAIRS),
        "--embedder",
        embedder_address,
        "--protocol",
        "stream",
        "--static",
        "0.85",
        "--json",
        str(out),
        "--plot",
        str(png),
        "--examples",
        "3",
    ]
    env = os.environ | {"SEMCACHE_CACHE_DIR": str(tmp_path / "cache")}
    done = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "policy static 0.85" in done.stdout
    # Static 0.85 hits some traps on the shipped set: three of them are shown.
    shown = done.stdout.split("3 wrong hits at random (similarity | query || cached):")[1]
    shown = shown.strip().splitlines()
    assert len(shown) == 3 and all(" || " in line for line in shown)
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["policy"]["name"] == "static 0.85" and result["protocol"] == "stream"
    assert result["policy"]["threshold"] == 0.85
    assert png.stat().st_size > 1000
    # A bad file is a message naming the line, not a traceback.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": "x"}\n', encoding="utf-8")
    argv[argv.index(str(PAIRS))] = str(bad)
    done = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )
    assert done.returncode == 1
    assert "bad.jsonl:1: 'b' must be a non-empty string" in done.stderr
