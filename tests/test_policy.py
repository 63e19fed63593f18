"""The hit policy: categories, tenant overrides, guards, the calibrated model, policy files."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from semcache.quality import guards
from semcache.quality.features import FEATURES
from semcache.quality.policy import (
    TUNED_EMBEDDER,
    HitPolicy,
    LogisticModel,
    PolicySet,
    detect_category,
)
from tests.conftest import load_pairs


def test_nan_similarity_never_hits() -> None:
    assert not HitPolicy.static(0.9).decide("a b", "a b", float("nan")).hit
    assert not HitPolicy.default().decide("a b", "a b", float("nan")).hit


def test_guards_read_a_bounded_prefix() -> None:
    assert len(guards.read("word " * 5000).words) == guards.MAX_WORDS
    assert (
        guards.signals("Which one is better, Python or Java?", "Which is better, Python or Java?")
        == ()
    )


def test_request_bound_only_tightens() -> None:
    policy = HitPolicy.static(0.9)
    assert policy.decide("a b", "a b", 0.92).hit
    assert not policy.decide("a b", "a b", 0.92, min_similarity=0.95).hit
    assert policy.decide("a b", "a b", 0.92, min_similarity=0.5).threshold == 0.9


def test_category_and_tenant_thresholds() -> None:
    policy = HitPolicy(
        thresholds={"default": 0.9, "code": 0.95, "creative": 0.85},
        tenants={"strict": {"default": 0.97}},
    )
    code = policy.decide("How do I reverse a list in Python?", "reverse python list", 0.93)
    assert (code.hit, code.category, code.threshold) == (False, "code", 0.95)
    assert policy.decide("Write a poem about rain", "a poem on rain", 0.86, category="creative").hit
    assert policy.decide("Where is Lima?", "Where's Lima?", 0.93).hit
    strict = policy.decide("Where is Lima?", "Where's Lima?", 0.93, tenant="strict")
    assert (strict.hit, strict.threshold) == (False, 0.97)
    # A category with no threshold of its own falls back to the (tenant's) default.
    assert policy.threshold_for("factual", "strict") == 0.97


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("How do I reverse a list in Python?", "code"),
        ("Why does `git push` say rejected?", "code"),
        ("x = foo(); what does this return?", "code"),
        ("What is the capital of Peru?", "default"),
        ("Write a haiku about autumn leaves", "default"),
    ],
)
def test_detects_code(prompt: str, category: str) -> None:
    assert detect_category(prompt) == category


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        ("How do I enable two-factor auth?", "How do I disable two-factor auth?", "antonym"),
        # A listed word is itself, not another's form: "lower" is lower, not low + er.
        (
            "What is the upper quartile of 3, 8, 9?",
            "What is the lower quartile of 3, 8, 9?",
            "antonym",
        ),
        (
            "How do I read a line from stdin in Rust?",
            "How do I write a line to stdout in Rust?",
            "antonym",
        ),
        (
            "Can I ask my landlord to fix the heating?",
            "Can my tenant ask me to fix the heating?",
            "antonym",
        ),
        (
            "Which mushrooms are safe to eat raw?",
            "Which mushrooms are not safe to eat raw?",
            "negation",
        ),
        ("Why does my script print?", "Why doesn't my script print?", "negation"),
        (
            "I want to lose weight. Should I run every day?",
            "I want to lose weight. Should I not run every day?",
            "negation",
        ),
        ("Suggest a 5 mile bike route", "Suggest a 50 mile bike route", "number"),
        ("Is $85,000 a good salary?", "Is 95k a good salary?", "number"),
        # One side counts what the other mentions uncounted, or a count of one.
        ("How do I undo my last git commit?", "How do I undo my last 3 git commits?", "number"),
        ("How do I read every sheet into pandas?", "How do I read 2 of the sheets?", "number"),
        ("Which circle has a 20 cm rim or 20 cm side?", "... 20 cm rim or 24 cm side?", "number"),
        ("Who won the most Super Bowls?", "Who won the most Super Bowls since 2010?", "number"),
        ("Write about our third store opening", "Write about our fifth store opening", "number"),
        ("How many cups are in a liter?", "How many cups are in a gallon?", "unit"),
        ("Is 20,000 miles a lot?", "Is 20,000 km a lot?", "unit"),  # plurals are units
        ("Is the post office open on Monday?", "Is the post office open on Friday?", "date"),
        ("What is the capital of Australia?", "What is the capital of Austria?", "entity"),
        ("Is it hard to learn Java?", "Is it hard to learn JavaScript?", "entity"),
        ("Convert 100 USD to EUR.", "Convert 100 EUR to USD.", "order"),
    ],
)
def test_each_guard_fires_on_its_trap(a: str, b: str, guard: str) -> None:
    assert guard in guards.signals(a, b)
    assert guard in guards.signals(b, a)  # symmetric


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I reverse a list in Python?", "How can I reverse a Python list?"),
        ("What does a 502 Bad Gateway error mean?", "What causes an HTTP 502 Bad Gateway?"),
        ("How many hours of sleep do adults need?", "How much sleep does an adult need?"),
        ("What is the capital of France?", "what's france's capital"),
        ("Is 3 a prime number?", "Is three a prime number?"),
        ("Is $85,000 a good salary for a junior developer?", "is 85k good for a junior dev"),
        (
            "I drive 20,000 miles a year. Lease or buy?",
            "Twenty thousand miles a year: lease or buy?",
        ),
        (
            "Should I heat a pulled hamstring 1 day later?",
            "Should I heat a pulled hamstring a day later?",
        ),
        ("Give me two hundred and fifty words on tea", "Give me 250 words on tea"),
        (  # "a bit" is no unit
            "I'm a bit lost. How long should I brine a 14 lb turkey?",
            "How long should I brine a 14 lb turkey?",
        ),
        (  # a "not" in the pleasantries is not about the question
            "Hi! Trying not to buy more than I need. Can I use my PS4 controller on a PS5?",
            "Can I use my PS4 controller on a PS5?",
        ),
        (  # a number about something the other prompt does not mention is detail
            "My table has 2 million sessions and I want a subset. How do I sample 1,000 rows?",
            "how to sample 1,000 rows from a table",
        ),
    ],
)
def test_guards_leave_plain_paraphrases_alone(a: str, b: str) -> None:
    assert guards.signals(a, b) == ()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How big is the United States, Ana?", "how big is the US, Ana?"),  # initials
        ("Which tools does Ana need for JavaScript?", "Which tools does Ana need for JS?"),
        ("Does Ana need a visa for Europe?", "Does Ana need a European visa?"),  # its people
        ("Can I take Ana to Peru?", "Can we take Ana to Peru, Tom?"),  # "I" is no name
    ],
)
def test_entity_guard_knows_a_name_in_its_other_forms(a: str, b: str) -> None:
    assert "entity" not in guards.signals(a, b)
    assert "entity" not in guards.signals(b, a)


def test_guard_actions_veto_or_raise_the_bar() -> None:
    policy = HitPolicy(guards={"antonym": "veto", "number": 0.97})
    enable, disable = "How do I enable 2FA?", "How do I disable 2FA?"
    vetoed = policy.decide(enable, disable, 0.99)
    assert (vetoed.hit, vetoed.guard) == (False, "antonym") and "antonym" in vetoed.fired
    five, fifty = "Suggest a 5 mile route", "Suggest a 50 mile route"
    assert policy.decide(five, fifty, 0.95).guard == "number"
    assert policy.decide(five, fifty, 0.98).hit
    assert HitPolicy.static(0.9).decide(enable, disable, 0.99).hit  # no guards: the trap hits


def test_shipped_traps_blocked_and_paraphrases_kept_by_guards() -> None:
    """Guards alone (similarity aside) on the shipped set: traps fire, paraphrases mostly not."""
    fired = collections.Counter()
    total = collections.Counter()
    for pair in load_pairs():
        kind = "paraphrase" if pair["label"] else "trap" if pair["kind"] != "unrelated" else None
        if kind:
            total[kind] += 1
            fired[kind] += bool(guards.signals(pair["b"], pair["a"]))
    assert fired["trap"] / total["trap"] >= 0.75
    assert fired["paraphrase"] / total["paraphrase"] <= 0.15


def model(cut: float = 0.5, weight: float = 40.0) -> LogisticModel:
    n = len(FEATURES)
    weights = [0.0] * n
    weights[FEATURES.index("similarity")] = weight
    return LogisticModel(
        weights=tuple(weights), bias=-0.9 * weight, cut=cut, mean=(0.0,) * n, scale=(1.0,) * n
    )


def test_calibrated_model_decides_above_the_threshold() -> None:
    policy = HitPolicy(thresholds={"default": 0.5}, model=model())
    yes = policy.decide("Where is Lima?", "Where's Lima?", 0.95)
    no = policy.decide("Where is Lima?", "Where's Lima?", 0.85)
    assert yes.hit and yes.probability > 0.5 and yes.cut == 0.5
    assert (no.hit, no.guard) == (False, "model") and no.probability < 0.5
    # The threshold reported is the similarity the model needed: 0.9 here (bias -0.9 w).
    assert yes.threshold == pytest.approx(0.9) == no.threshold


def test_policy_files_round_trip_and_bad_ones_say_why(tmp_path: Path) -> None:
    policy = HitPolicy(
        thresholds={"default": 0.91, "code": 0.95},
        tenants={"a": {"code": 0.9}},
        guards={"number": "veto", "entity": 0.97},
        model=model(),
        name="mine",
    )
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy.to_json()))
    assert HitPolicy.load(path) == policy
    for bad, message in [
        ({"thresholds": {"default": 1.5}}, r"thresholds.default: must be a cosine similarity"),
        ({"thresholds": {"code": 0.9}}, "needs a 'default' entry"),
        ({"guards": {"swear": "veto"}}, "guards.swear: unknown guard"),
        ({"guards": {"number": "block"}}, "guards.number"),
        ({"threshold": 0.9}, "unknown field"),
        ({"model": {**model().to_json(), "features": ["similarity"]}}, "model.features"),
        ({"model": {**model().to_json(), "bias": float("nan")}}, "must be finite"),
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=message):
            HitPolicy.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="policy file"):
        HitPolicy.load(path)


def test_shipped_policies_are_one_per_model_and_chosen_by_model_id() -> None:
    policies = PolicySet.shipped()
    embedders = [p.embedder for p in policies.policies]
    assert all(embedders) and len(set(embedders)) == len(embedders)
    for policy in policies.policies:
        assert set(policy.guards) <= set(guards.GUARDS)
        assert policies.for_model(f"{policy.embedder}-int8-0123456789abcdef") is policy
    assert {p.embedder for p in policies.policies} == {"all-MiniLM-L6-v2", TUNED_EMBEDDER}
    anything = HitPolicy.static(0.9)
    assert PolicySet((HitPolicy.default(), anything)).for_model("other-int8-01") is anything


@pytest.mark.parametrize(
    ("query", "cached", "fired"),
    [
        # A misspelled word is not another word, nor a misspelled name another name.
        (
            "how do i sort a list of dictionarys by key in pyhton",
            "How do I sort a list of dictionaries by key in Python?",
            (),
        ),
        (
            "how long is the flight from londn to new york",
            "How long is the flight from London to New York?",
            (),
        ),
        ("What is the capital of Iraq?", "What is the capital of Iran?", ("entity",)),
        ("side effects of aspirin for kids", "side effects of ibuprofen for kids", ("swap",)),
        # A misspelling that stems otherwise than its word ("pixl", "pixel"), a short word
        # with two letters swapped or one doubled, "then" for "than": one word to `swap`.
        (
            "how many pixles does a poster print need",
            "How many pixels does a poster print need?",
            (),
        ),
        ("how do i clean my ovne racks", "How do I clean my oven racks?", ()),
        ("how to fix a squeaky dor hinge", "How to fix a squeaky door hinge?", ()),
        ("is a kilometre longer then a mile", "Is a kilometre longer than a mile?", ()),
        ("how do i clean my grill racks", "How do I clean my oven racks?", ("swap",)),
        # A number glued to a name's letters counts nothing; another in its place differs.
        (
            "How do I convert 3.5 moles of CO2 to grams?",
            "What is the way to convert 3.5 mol of carbon dioxide to grams?",
            (),
        ),
        (
            "Does the PS4 have a headphone jack?",
            "Does the PS5 have a headphone jack?",
            ("number", "swap"),
        ),
        # "401k" is the plan "401(k)", not 401,000 (while "60k" is 60,000).
        (
            "how much can I put in my 401k this year",
            "How much can I put in my 401(k) this year?",
            (),
        ),
        (
            "how much can I put in my 403b this year",
            "How much can I put in my 401(k) this year?",
            ("number",),
        ),
        ("best food for an old cat", "best food for an old car", ("swap",)),
        # One word in two forms is not a swap: a clipping or derived form, two negations,
        # a number with and without its separator. One letter more is another word, and a
        # name is never a form of another.
        ("ipad pro m4 max brightness", "What's the maximum brightness of the iPad Pro M4?", ()),
        ("descale my keurig with no vinegar", "descale my keurig without vinegar", ()),
        ("how to invest 5000 dollars", "how to invest 5,000 dollars", ()),
        # ... and two numbers are never a misspelling of each other (a zero more or less).
        ("how to invest 500 dollars", "how to invest 5000 dollars", ("number", "swap")),
        (
            "Can I deduct the mortgage interest on a second home?",
            "Is the mortgage interest on a second home deductible?",
            (),
        ),
        ("best deals on a new car today", "best deals on a new card today", ("swap",)),
        ("is java good for backend work", "is JavaScript good for backend work", ("swap",)),
        # Two things trading places around a direction word, phrases included.
        ("flights from Paris to London", "flights from London to Paris", ("order",)),
        ("flights to Paris from London", "flights from London to Paris", ()),
        (
            "Can I substitute baking powder for baking soda in pancakes?",
            "Can I substitute baking soda for baking powder in pancakes?",
            ("order",),
        ),
        (
            "How do I merge the main branch into develop?",
            "How do I merge the develop branch into main?",
            ("order",),
        ),
        # A direction word used twice is compared with its like use on the other side
        # (each "to" with each fired even on the same prompt mistyped).
        (
            "if i switch from the basic plan to premium, what happens to the 3 months of basic "
            "i have lefft",
            "If I switch from the Basic plan to Premium, what happens to the 3 months of Basic "
            "I have left?",
            (),
        ),
        # ... or anywhere, the words between them staying put.
        (
            "Can I use my PS4 controller on a PS5?",
            "Can I use my PS5 controller on a PS4?",
            ("order",),
        ),
        ("Why do Poles dislike Russians?", "Why do Russians dislike Poles?", ("order",)),
        ("In Python, how do I reverse a list?", "How do I reverse a list in Python?", ()),
        (
            "In JavaScript, how can I get a string's last 3 characters?",
            "How do I get the last 3 characters of a string in JavaScript?",
            (),
        ),
        (
            "What is the difference between real gas and ideal gas?",
            "What is the difference between ideal gas and real gas?",
            (),
        ),
        (
            "What is the difference between a thread and a process?",
            "What is the difference between a process and a thread?",
            (),
        ),
        (
            "Is it rude to decline a wedding invitation?",
            "Is it rude to turn down a wedding invitation?",
            (),
        ),
        # Two things joined by "and" or "or" as equals read the same both ways; an "and"
        # between two clauses does not make them equals.
        (
            "Which is healthier, brown rice or white rice?",
            "Which is healthier, white rice or brown rice?",
            (),
        ),
        (
            "Should I buy baking soda and baking powder?",
            "Should I buy baking powder and baking soda?",
            (),
        ),
        (
            "In Word, how do I make page one portrait and the rest of the document landscape?",
            "In Word, how do I make page one landscape and the rest of the document portrait?",
            ("order",),
        ),
        (
            "What is the most profitable product to import from India and sell in Canada?",
            "What is the most profitable product to import from Canada and sell in India?",
            ("order",),
        ),
    ],
)
def test_guards_tell_typos_and_reorderings_from_other_questions(
    query: str, cached: str, fired: tuple[str, ...]
) -> None:
    assert guards.signals(query, cached) == fired
