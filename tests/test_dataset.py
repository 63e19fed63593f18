"""The project's training data: the shipped groups, their splits and the augmentation."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from embed_svc.build import recipe
from semcache.quality import augment, dataset


@pytest.fixture(scope="module")
def groups() -> list[dataset.Group]:
    return dataset.load_groups([recipe.GROUPS_DIR])


def test_the_shipped_groups_are_many_varied_and_complete(groups) -> None:
    assert len(groups) >= 1500
    assert len({g.domain for g in groups}) >= 30
    traps = Counter(kind for g in groups for kind in g.traps)
    for kind in dataset.TRAPS:  # every kind, most of them for most prompts
        assert traps[kind] / len(groups) >= (1.0 if kind not in dataset.OPTIONAL_TRAPS else 0.3)
    splits = Counter(g.split for g in groups)
    for name, share in (("dev", dataset.DEV_FRACTION), ("test", dataset.TEST_FRACTION)):
        assert abs(splits[name] / len(groups) - share) < 0.03


def test_splits_are_by_base_prompt_and_fixed(groups) -> None:
    # The split is a function of the base prompt alone: its variants follow it.
    assert dataset.split_of("How do I reverse a list in Python?") == dataset.split_of(
        "how do I reverse a list in python"
    )
    seen = {g.prompt: g.split for g in groups}
    assert all(dataset.split_of(prompt) == split for prompt, split in seen.items())


def test_a_text_in_two_groups_is_refused(tmp_path) -> None:
    record = {
        "domain": "d",
        "prompt": "How tall is Mount Everest?",
        "close": ["What is the height of Mount Everest?", "How high is Mount Everest?"],
        "loose": ["Everest's elevation above sea level?", "how far up does Everest go"],
        "typo": ["how tall is mount everst"],
        "filler": ["hi! how tall is Mount Everest? thx"],
        "terse": ["everest height"],
        "negation": None,
        "antonym": "How short is Mount Everest?",
        "number": None,
        "unit": "How tall is Mount Everest in feet?",
        "entity": "How tall is K2?",
        "direction": None,
        "scope": "How long does it take to climb Mount Everest?",
        "unrelated": "What is the longest river in Asia?",
    }
    other = record | {
        "prompt": "How tall is K2?",
        "entity": "How tall is Mount Everest?",
        "close": ["What is the height of K2?", "How high is K2?"],
    }
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps(other) + "\n")
    with pytest.raises(dataset.DatasetError, match=r"g\.jsonl:2: .* also appears in .*g\.jsonl:1"):
        dataset.load_groups([path])
    path.write_text(json.dumps(record | {"unit": None, "antonym": None, "entity": None}) + "\n")
    with pytest.raises(dataset.DatasetError, match="entity: must be a non-empty string"):
        dataset.load_groups([path])


def test_augmentation_is_seeded_and_per_group(groups) -> None:
    first = [e.to_json() for e in augment.examples_of(groups[0], seed=0)]
    assert first == [e.to_json() for e in augment.examples_of(groups[0], seed=0)]
    assert first != [e.to_json() for e in augment.examples_of(groups[0], seed=1)]
    # Another group's examples do not depend on what comes before it.
    alone = [e.to_json() for e in augment.examples_of(groups[5], seed=0)]
    together = [e.to_json() for e in augment.training_examples(groups[:6], seed=0)]
    assert together[-len(alone) :] == alone


@pytest.mark.parametrize(
    ("text", "edit", "expected"),
    [
        (
            "flights from New York to Paris in June",
            "direction",
            "flights from Paris to New York in June",
        ),
        (
            "cheapest way from the airport to the city center?",
            "direction",
            "cheapest way from the city center to the airport?",
        ),
        ("Can I enable Face ID on my iPad?", "antonym", "Can I disable Face ID on my iPad?"),
        ("Convert 5 km to miles", "unit", None),  # would ask for miles to miles
        ("Is 30 °C hot for a run?", "unit", "Is 30 fahrenheit hot for a run?"),
        ("Is 9 hours of sleep too much?", "unit", "Is 9 minutes of sleep too much?"),
        ("Is 1 day of rest enough?", "unit", "Is 1 week of rest enough?"),
    ],
)
def test_trap_edits(text: str, edit: str, expected: str | None) -> None:
    rng = random.Random(0)
    made = {
        "direction": lambda: augment.direction_edit(text),
        "antonym": lambda: augment.antonym_edit(text, rng),
        "unit": lambda: augment.unit_edit(text, rng),
    }[edit]()
    assert made == expected


def test_number_edits_change_the_number_and_keep_years_years() -> None:
    rng = random.Random(3)
    for _ in range(20):
        edited = augment.number_edit("What was inflation in 2019 in the US?", rng)
        assert edited is not None and edited != "What was inflation in 2019 in the US?"
        assert 2010 <= int(edited.split()[4]) <= 2030
    assert augment.number_edit("What is inflation?", rng) is None
