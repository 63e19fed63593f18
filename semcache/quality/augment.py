"""Training examples from the project's groups, with seeded programmatic augmentation.

The written groups (`dataset.py`) are the signal; augmentation adds what a person would
not bother writing many times over:

- positives (the same request): typos (a swapped, dropped or doubled letter), no capitals
  and no final punctuation, filler around the request;
- traps (another request): a number changed, a unit or currency swapped, a word swapped
  for its antonym (the guards' list), the two ends of "from X to Y" swapped.

Each group's edits come from its own random stream (seeded by the seed and the group's
prompt), so adding or editing one group leaves every other group's examples as they were.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from semcache.quality.antonyms import ANTONYM_OF
from semcache.quality.dataset import Group

_FILLER_BEFORE = (
    "hi,",
    "hey,",
    "hello!",
    "quick question:",
    "hi there, quick one:",
    "ok so",
    "hey there -",
    "I was wondering,",
    "can you help?",
    "sorry if this is basic, but",
    "good morning!",
)
_FILLER_AFTER = (
    "thanks!",
    "thank you",
    "thanks in advance",
    "cheers",
    "any help appreciated",
    "please",
    "ty",
    "much appreciated!",
)

#: Units and currencies by kind, each with its spellings (first: the one edits write).
_UNITS = (
    ("km", "kilometers", "kilometres"),
    ("miles", "mile"),
    ("meters", "metres", "meter"),
    ("feet", "ft", "foot"),
    ("cm", "centimeters", "centimetres"),
    ("inches", "inch"),
    ("kg", "kilograms", "kilos"),
    ("pounds", "lbs", "lb"),
    ("grams", "gram"),
    ("ounces", "oz"),
    ("celsius", "°C"),
    ("fahrenheit", "°F"),
    ("liters", "litres", "liter"),
    ("gallons", "gallon"),
    ("ml", "milliliters", "millilitres"),
    ("cups", "cup"),
    ("tablespoons", "tbsp"),
    ("teaspoons", "tsp"),
    ("GB", "gigabytes"),
    ("MB", "megabytes"),
    ("TB", "terabytes"),
    ("hours", "hour"),
    ("minutes", "minute", "mins"),
    ("days", "day"),
    ("weeks", "week"),
    ("months", "month"),
    ("years", "year"),
    ("per month", "monthly"),
    ("per year", "yearly"),
    ("USD", "dollars"),
    ("EUR", "euros"),
    ("GBP", "pounds sterling"),
    ("mph",),
    ("km/h", "kph"),
)
_FAMILY = {family[0]: family for family in _UNITS}
#: Swaps that change what is asked: a unit for another of its kind.
_UNIT_SWAPS = (
    ("km", "miles"),
    ("meters", "feet"),
    ("cm", "inches"),
    ("kg", "pounds"),
    ("grams", "ounces"),
    ("celsius", "fahrenheit"),
    ("liters", "gallons"),
    ("ml", "cups"),
    ("cups", "grams"),
    ("tablespoons", "teaspoons"),
    ("GB", "MB"),
    ("TB", "GB"),
    ("hours", "minutes"),
    ("days", "weeks"),
    ("weeks", "months"),
    ("months", "years"),
    ("per month", "per year"),
    ("USD", "EUR"),
    ("GBP", "USD"),
    ("mph", "km/h"),
)
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.]*\d)")
#: Words that end a place or thing after "from" / "to" ("from Paris to Rome in June").
_STOP = frozenset(
    (
        "a",
        "an",
        "the",
        "in",
        "on",
        "at",
        "for",
        "by",
        "with",
        "during",
        "next",
        "this",
        "last",
        "and",
        "or",
        "but",
        "if",
        "when",
        "before",
        "after",
        "is",
        "are",
        "was",
        "be",
        "via",
        "without",
        "to",
        "from",
    )
)
_ARTICLES = frozenset(("the", "a", "an", "my", "your"))


@dataclass(frozen=True, slots=True)
class Example:
    """One contrastive training example: `anchor` and `positive` take one answer; each of
    `negatives` is a near miss of the anchor that needs another."""

    anchor: str
    positive: str
    negatives: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"anchor": self.anchor, "positive": self.positive, "negatives": list(self.negatives)}


def _rng(seed: int, text: str) -> random.Random:
    digest = hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


# --- positives ----------------------------------------------------------------------------


def typo(text: str, rng: random.Random) -> str | None:
    """One or two letters swapped, dropped or doubled in words of 4+ letters."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not candidates:
        return None
    for i in rng.sample(candidates, min(len(candidates), rng.choice((1, 1, 2)))):
        w = words[i]
        j = rng.randrange(1, len(w) - 1)
        match rng.randrange(3):
            case 0:
                w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
            case 1:
                w = w[:j] + w[j + 1 :]
            case _:
                w = w[:j] + w[j] + w[j:]
        words[i] = w
    changed = " ".join(words)
    return changed if changed != text else None


def casual(text: str) -> str | None:
    """Lower case, no final punctuation: how many people type."""
    changed = text.lower().rstrip("?.! ")
    return changed if changed != text else None


def with_filler(text: str, rng: random.Random) -> str:
    before = rng.choice(_FILLER_BEFORE)
    after = rng.choice(_FILLER_AFTER) if rng.random() < 0.6 else ""
    if before.endswith(",") and text[:2] != "I " and text[:1].isupper():
        text = text[0].lower() + text[1:]  # "hey, how do I..."
    return f"{before} {text} {after}".strip()


# --- traps --------------------------------------------------------------------------------


def number_edit(text: str, rng: random.Random) -> str | None:
    """One number changed (years stay years)."""
    found = list(_NUMBER.finditer(text))
    if not found:
        return None
    m = rng.choice(found)
    value = m.group(1)
    if "." in value:
        new = f"{float(value) * 2:g}"
    else:
        n = int(value)
        if 1900 <= n <= 2100:
            new = str(n + rng.choice((-3, -2, 2, 3)))
        elif n < 10:
            new = str(rng.choice([k for k in range(1, 13) if k != n]))
        else:
            new = str(n * rng.choice((2, 3, 10)))
    return text[: m.start(1)] + new + text[m.end(1) :]


def unit_edit(text: str, rng: random.Random) -> str | None:
    """One unit or currency swapped for another of its kind."""
    options = []
    for x, y in _UNIT_SWAPS:
        for old, new in ((_FAMILY[x], _FAMILY[y]), (_FAMILY[y], _FAMILY[x])):
            if any(_has(text, spelling) for spelling in new):
                continue  # "5 km to miles" must not become "5 miles to miles"
            for spelling in old:
                for m in re.finditer(
                    rf"(?<![\w°]){re.escape(spelling)}(?!\w)", text, re.IGNORECASE
                ):
                    options.append((m.start(), m.end(), _same_number(new, spelling)))
    if not options:
        return None
    start, end, new = rng.choice(options)  # type: ignore[assignment]  # new: a str here
    return text[:start] + new + text[end:]  # type: ignore[operator]


def _same_number(family: tuple[str, ...], replaced: str) -> str:
    """The family's word, singular where the word it replaces is ("per day" -> "per week")."""
    word = family[0]
    singular = word[:-1] if word.endswith("s") else word
    return singular if not replaced.endswith("s") and singular in family else word


def _has(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def antonym_edit(text: str, rng: random.Random) -> str | None:
    """One word swapped for its antonym (base forms only: 'enable' -> 'disable'); capitalised
    words inside a sentence are names ("New York"), left alone."""
    options = []
    for m in re.finditer(r"[A-Za-z]+", text):
        word = m.group(0)
        if word[0].isupper() and m.start() > 0:
            continue
        others = ANTONYM_OF.get(word.lower())
        if others:
            options.append((m, sorted(others)))
    if not options:
        return None
    m, others = rng.choice(options)  # type: ignore[assignment]  # others: a sorted list
    new = rng.choice(others)  # type: ignore[arg-type,var-annotated]
    if m.group(0)[0].isupper():
        new = new.capitalize()
    return text[: m.start()] + new + text[m.end() :]


def _phrase(words: list[str], start: int) -> int:
    """The end of the 1-3 word phrase at `start` (a place, a unit, a language), after an
    article if one leads it."""
    if start < len(words) and words[start].lower() in _ARTICLES:
        start += 1
    end = start
    while end < len(words) and end - start < 3:
        word = words[end].lower()
        bare = word.rstrip("?.,!;:")
        if not bare or bare in _STOP:
            break
        end += 1
        if bare != word:  # punctuation ends the phrase
            break
    return end


def direction_edit(text: str) -> str | None:
    """ "from X to Y" -> "from Y to X" (X and Y up to three words, not crossing a
    preposition or punctuation)."""
    words = text.split(" ")
    lower = [w.lower() for w in words]
    for i, word in enumerate(lower):
        if word != "from":
            continue
        x_end = _phrase(words, i + 1)
        if x_end <= i + 1 or x_end >= len(words) or lower[x_end] != "to":
            continue
        y_end = _phrase(words, x_end + 1)
        if y_end <= x_end + 1 or (y_end == x_end + 2 and lower[x_end + 1] in _ARTICLES):
            continue
        x, y = words[i + 1 : x_end], words[x_end + 1 : y_end]
        tail = y[-1][len(y[-1].rstrip("?.,!;:")) :]  # punctuation stays where it was
        y[-1] = y[-1][: len(y[-1]) - len(tail)]
        if not y[-1] or [w.lower() for w in x] == [w.lower() for w in y]:
            return None
        swapped = [*words[: i + 1], *y, "to", *x]
        swapped[-1] += tail
        return " ".join([*swapped, *words[y_end:]])
    return None


# --- examples -----------------------------------------------------------------------------


def augmented_positives(prompt: str, rng: random.Random) -> list[str]:
    out = [typo(prompt, rng), casual(prompt), with_filler(prompt, rng)]
    return [t for t in out if t and t != prompt]


def augmented_traps(prompt: str, rng: random.Random) -> list[str]:
    out = [
        number_edit(prompt, rng),
        unit_edit(prompt, rng),
        antonym_edit(prompt, rng),
        direction_edit(prompt),
    ]
    return [t for t in out if t and t != prompt]


#: Examples drawn per group, and traps (hard negatives) per example: what the training
#: budget affords (each text costs a forward and a backward pass).
EXAMPLES_PER_GROUP = 5
NEGATIVES_PER_EXAMPLE = 2


def examples_of(group: Group, seed: int = 0, augment: bool = True) -> Iterator[Example]:
    """The group's contrastive examples: the base prompt against a close, a loose and one
    other written paraphrase and an augmented one, and two paraphrases against each other;
    each with `NEGATIVES_PER_EXAMPLE` of the group's traps (written or augmented) as hard
    negatives."""
    rng = _rng(seed, group.prompt)
    para = group.paraphrases
    written = [t for variants in para.values() for t in variants]
    others = [t for kind in ("typo", "filler", "terse") for t in para[kind]]
    traps = list(group.traps.values())
    extra = augmented_positives(group.prompt, rng) if augment else []
    if augment:
        traps += augmented_traps(group.prompt, rng)
    pairs = [
        (group.prompt, rng.choice(para["close"])),
        (group.prompt, rng.choice(para["loose"])),
        (group.prompt, rng.choice(others)),
        (group.prompt, rng.choice(extra or others)),
        tuple(rng.sample(written, 2)),
    ]
    for anchor, positive in pairs[:EXAMPLES_PER_GROUP]:
        chosen = rng.sample(traps, min(NEGATIVES_PER_EXAMPLE, len(traps)))
        yield Example(anchor, positive, tuple(chosen))


def verifier_pairs_of(group: Group, seed: int = 0) -> Iterator[tuple[str, str, float]]:
    """The group as labelled pairs for the verifier: the base prompt against every variant
    (written and augmented), and paraphrases against each other and against traps, so that
    the base prompt's wording is not the only anchor it learns."""
    rng = _rng(seed + 1, group.prompt)
    positives = [t for variants in group.paraphrases.values() for t in variants]
    traps = list(group.traps.values())
    augmented_pos = augmented_positives(group.prompt, rng)
    augmented_neg = augmented_traps(group.prompt, rng)
    for text in positives + augmented_pos:
        yield group.prompt, text, 1.0
    for text in traps + augmented_neg:
        yield group.prompt, text, 0.0
    for _ in range(2):
        a, b = rng.sample(positives, 2)
        yield a, b, 1.0
    for _ in range(min(2, len(traps))):
        yield rng.choice(positives), rng.choice(traps), 0.0


def training_examples(
    groups: Iterable[Group], extra_positives: Iterable[tuple[str, str]] = (), seed: int = 0
) -> list[Example]:
    """Every group's examples, plus extra positive pairs (STS-B's) without a hard negative."""
    examples = [e for g in groups for e in examples_of(g, seed)]
    examples += [Example(a, b) for a, b in extra_positives]
    return examples
