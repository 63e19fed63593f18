"""Near-miss guards: lexical signals that two close prompts still ask different things.

An embedding puts "enable 2FA" next to "disable 2FA", "5 miles" next to "50 miles", and
"capital of Australia" next to "capital of Austria": the words that flip the answer are a
small part of the sentence. Each guard compares the two prompts for one such difference:

    negation  one side negates ("not", "never", "n't", "without", ...), the other does not
    antonym   one side has a word whose antonym only the other side has (enable/disable)
    number    the numbers differ ("5" vs "50", "three" vs "3" count as the same)
    unit      the units of measure or currencies differ (km vs miles, GB vs MB)
    date      the time words differ (tomorrow/yesterday, Monday/Friday, January/June)
    entity    a proper noun on one side is absent from the other (Australia vs Austria)
    order     two things trading places: around a direction word (from X to Y vs from Y
              to X), or anywhere the rest stays ("Can I use my PS4 controller on a PS5?"
              vs "my PS5 controller on a PS4")
    swap      exactly one content word replaced by another, the rest the same
              ("side effects of ibuprofen" vs "side effects of aspirin")

Pure functions of the two texts, no model: cheap enough for every semantic candidate.
The policy decides what a signal does (veto the hit, or demand a higher similarity).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from semcache.quality.antonyms import ANTONYM_OF, BASE

GUARDS = ("negation", "antonym", "number", "unit", "date", "entity", "order", "swap")

_WORD = re.compile(r"[A-Za-z][A-Za-z'’]*|[0-9]+(?:[.,][0-9]+)*|%")
#: Words read per prompt: a guard is about what a question asks, not a pasted document.
MAX_WORDS = 512


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NEGATIONS = _words(
    "not no non never none nobody nothing neither nor without cannot cant dont doesnt didnt isnt "
    "arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt aint"
)

_ZERO_TO_TWENTY = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
)
# "one" is left out: far more often a pronoun ("which one is better") than a count.
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_ZERO_TO_TWENTY.split()) if w != "one"} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
    "dozen": "12",
    "half": "0.5",
}

_UNITS = {
    "km": "km",
    "kilometer": "km",
    "kilometre": "km",
    "mile": "mile",
    "meter": "m",
    "metre": "m",
    "foot": "ft",
    "feet": "ft",
    "ft": "ft",
    "inch": "in",
    "cm": "cm",
    "centimeter": "cm",
    "mm": "mm",
    "millimeter": "mm",
    "yard": "yd",
    "kg": "kg",
    "kilogram": "kg",
    "kilo": "kg",
    "pound": "lb",
    "lb": "lb",
    "lbs": "lb",
    "gram": "g",
    "ounce": "oz",
    "oz": "oz",
    "ton": "t",
    "tonne": "t",
    "liter": "l",
    "litre": "l",
    "ml": "ml",
    "milliliter": "ml",
    "gallon": "gal",
    "cup": "cup",
    "pint": "pint",
    "quart": "quart",
    "tablespoon": "tbsp",
    "teaspoon": "tsp",
    "celsius": "C",
    "fahrenheit": "F",
    "kelvin": "K",
    "sec": "s",
    "minute": "min",
    "hour": "h",
    "hr": "h",
    "day": "day",
    "week": "week",
    "month": "month",
    "year": "year",
    "mph": "mph",
    "kph": "kph",
    "kmh": "kph",
    "kb": "kB",
    "mb": "MB",
    "gb": "GB",
    "tb": "TB",
    "byte": "B",
    "bit": "bit",
    "kbps": "kbps",
    "mbps": "Mbps",
    "gbps": "Gbps",
    "hz": "Hz",
    "ghz": "GHz",
    "mhz": "MHz",
    "watt": "W",
    "kw": "kW",
    "kwh": "kWh",
    "volt": "V",
    "amp": "A",
    "calorie": "kcal",
    "kcal": "kcal",
    "percent": "%",
    "%": "%",
    "acre": "acre",
    "hectare": "ha",
    "dollar": "USD",
    "usd": "USD",
    "euro": "EUR",
    "eur": "EUR",
    "yen": "JPY",
    "jpy": "JPY",
    "gbp": "GBP",
    "sterling": "GBP",
    "rupee": "INR",
    "inr": "INR",
    "yuan": "CNY",
    "bitcoin": "BTC",
    "btc": "BTC",
    "peso": "MXN",
    "franc": "CHF",
}

_TIME_WORDS = _words(
    "today tomorrow yesterday tonight morning evening afternoon night weekend "
    "monday tuesday wednesday thursday friday saturday sunday january february march april "
    "may june july august september october november december spring summer autumn fall "
    "winter"
)

#: Words that give the words around them a role: from X to Y, X into Y, X than Y, X for Y,
#: X instead of Y, X cause Y. ("in" is not one: "in Python, how do I..." is a reordering.)
_DIRECTION_WORDS = _words(
    "from to into than vs versus over before after for instead with cause causes caused"
)
#: Content words on each side of a direction word that take a role (a phrase's words).
_ROLE_WORDS = 4
#: Content words each of two transposed things may have ("baking soda", "PS5"): longer
#: blocks trading places are a clause moved ("In JavaScript, how do I..." for "How do I
#: ... in JavaScript?"), which keeps the question.
_TRANSPOSED_WORDS = 2
#: Words of a relation that reads the same both ways: "the difference between X and Y",
#: "X vs Y", "X or Y" ask one question in either order.
_SYMMETRIC_WORDS = _words(
    "and or between vs versus difference differences compare comparison similarities similar"
)

_STOPWORDS = _words(
    "a an the is are was were be been being am do does did doing have has had i me my we our "
    "you your it its this that these those of in on at for with by as and or but if so what "
    "which who whom whose when where why how can could should would will shall may might must "
    "there here some any much many very really just about get got"
)


def _normalise(word: str) -> str:
    word = word.lower().replace("’", "'")
    if word.endswith("n't"):
        return {"won't": "wont", "can't": "cant"}.get(word, word[:-3] + "nt")
    return word.removesuffix("'s").replace("'", "")


def _stem(word: str) -> str:
    """A crude stemmer for word-list matching: plurals, -ed, -ing, -er/-est."""
    for suffix, keep in (
        ("iest", "y"),
        ("ies", "y"),
        ("est", ""),
        ("ing", ""),
        ("ed", ""),
        ("es", ""),
        ("er", ""),
        ("s", ""),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)] + keep
            if len(stem) >= 3 and stem[-1] == stem[-2] and suffix in ("est", "er", "ing", "ed"):
                stem = stem[:-1]  # biggest -> big, stopped -> stop
            return stem
    return word


@dataclass(frozen=True, slots=True)
class Text:
    """What the guards read from one prompt, computed once per prompt."""

    words: tuple[str, ...]  # normalised, in order
    stems: frozenset[str]
    negated: bool
    numbers: frozenset[str]
    units: frozenset[str]
    times: frozenset[str]
    entities: frozenset[str]  # lower-cased proper nouns (capitalised, not sentence-initial)
    content: tuple[str, ...]  # content words in order
    #: The content words as `swap` and `order` compare them: stemmed, number words as digits.
    content_stems: tuple[str, ...]
    #: Each direction word with the content words before and after it (up to the next
    #: direction word, at most _ROLE_WORDS each side): (word, before, after).
    roles: tuple[tuple[str, frozenset[str], frozenset[str]], ...]


def read(text: str) -> Text:
    """What the guards read from one prompt: its first `MAX_WORDS` words, in linear time
    (this runs on a shard's request path)."""
    matches = list(itertools.islice(_WORD.finditer(text), MAX_WORDS))
    raw = [m.group() for m in matches]
    words = tuple(_normalise(w) for w in raw)
    stems = frozenset(_stem(w) for w in words)
    numbers = set()
    for i, w in enumerate(words):
        if w[0].isdigit():
            thousands = i + 1 < len(words) and words[i + 1] == "k" and _touching(matches, i)
            numbers.add(_number(w, thousands))
        elif w in _NUMBER_WORDS:
            numbers.add(_NUMBER_WORDS[w])
    units = {_UNITS[w] for w in words if w in _UNITS}
    units |= {_UNITS[s] for s in stems if s in _UNITS}
    entities = set()
    previous_end = 0
    for i, m in enumerate(matches):
        w = m.group()
        gap = text[previous_end : m.start()].strip()  # what separates it from the last word
        sentence_start = (i == 0 and not gap) or (gap != "" and gap[-1] in ".?!:")
        if any(c.isupper() for c in w) and not sentence_start and not w.startswith("I'"):
            entities.add(_normalise(w))
        previous_end = m.end()
    content = tuple(w for w in words if w not in _STOPWORDS)
    return Text(
        words=words,
        stems=stems,
        negated=any(w in _NEGATIONS for w in words),
        numbers=frozenset(numbers),
        units=frozenset(units),
        times=frozenset(w for w in words if w in _TIME_WORDS),
        entities=frozenset(entities),
        content=content,
        content_stems=tuple(_NUMBER_WORDS.get(w) or _stem(w) for w in content),
        roles=_roles(words),
    )


def _touching(matches: list[re.Match[str]], i: int) -> bool:
    """Whether word i+1 follows word i with nothing between ("60k", not "60 k")."""
    return matches[i].end() == matches[i + 1].start()


def _number(digits: str, thousands: bool) -> str:
    """A number as the guards compare it: "60,000", "60000" and "60k" alike."""
    plain = digits.replace(",", "")
    if not thousands:
        return plain
    try:
        value = float(plain) * 1000
    except ValueError:  # "1.2.3": a version, not an amount
        return plain
    return str(int(value)) if value.is_integer() else str(value)


def _roles(words: tuple[str, ...]) -> tuple[tuple[str, frozenset[str], frozenset[str]], ...]:
    """(direction word, content words before it, content words after it) for each direction
    word, each side running to the neighbouring direction word: in "from London to Paris",
    to: ({london}, {paris})."""
    marks = [i for i, w in enumerate(words) if w in _DIRECTION_WORDS]
    bounds = [-1, *marks, len(words)]
    roles = []
    for k, i in enumerate(marks):
        before = [w for w in words[bounds[k] + 1 : i] if w not in _STOPWORDS]
        after = [w for w in words[i + 1 : bounds[k + 2]] if w not in _STOPWORDS]
        roles.append((words[i], frozenset(before[-_ROLE_WORDS:]), frozenset(after[:_ROLE_WORDS])))
    return tuple(roles)


def _antonym(a: Text, b: Text) -> bool:
    """One side has a word whose antonym only the other side has."""
    base_a = {BASE[w] for w in a.words if w in BASE}
    base_b = {BASE[w] for w in b.words if w in BASE}
    only_a, only_b = base_a - base_b, base_b - base_a
    return any(ANTONYM_OF[w] & only_b for w in only_a)


def misspelled(x: str, y: str, shortest: int = 5) -> bool:
    """Whether `y` reads as `x` mistyped: one letter dropped, added, changed or two swapped
    (two edits in words of 8 letters or more), the first letter kept, both words at least
    `shortest` long (shorter ones are too often other words: lose/lost, Iran/Iraq)."""
    if x == y or x[:1] != y[:1] or min(len(x), len(y)) < shortest:
        return False
    limit = 2 if min(len(x), len(y)) >= 8 else 1
    if abs(len(x) - len(y)) > limit:
        return False
    # Optimal string alignment distance, keeping two rows of the dynamic programme.
    before: list[int] = []
    row = list(range(len(y) + 1))
    for i in range(1, len(x) + 1):
        current = [i] + [0] * len(y)
        for j in range(1, len(y) + 1):
            cost = int(x[i - 1] != y[j - 1])
            current[j] = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + cost)
            if i > 1 and j > 1 and x[i - 1] == y[j - 2] and x[i - 2] == y[j - 1]:
                current[j] = min(current[j], before[j - 2] + 1)  # two letters swapped
        before, row = row, current
    return row[-1] <= limit


def _unmatched(names: frozenset[str], other: Text) -> set[str]:
    """Names the other prompt mentions in no form, not even mistyped."""
    words = set(other.words) | other.stems
    return {n for n in names - words if not any(misspelled(n, w, shortest=6) for w in words)}


def _entity(a: Text, b: Text) -> bool:
    """A swapped proper noun: each side names one the other does not mention at all (in any
    case, or mistyped). One side adding a name ("HTTP 502" vs "502") is detail, not a
    different thing."""
    return bool(_unmatched(a.entities, b)) and bool(_unmatched(b.entities, a))


def _order(a: Text, b: Text) -> bool:
    """Two things trading places: around the same direction word (from X to Y vs from Y to
    X, baking soda for baking powder vs baking powder for baking soda), or anywhere else
    with the words between them staying put (my PS4 controller on a PS5 vs my PS5
    controller on a PS4)."""
    return _roles_swapped(a, b) or _transposed(a, b)


def _roles_swapped(a: Text, b: Text) -> bool:
    for word, before_a, after_a in a.roles:
        for other, before_b, after_b in b.roles:
            if other != word:
                continue
            moved_back = (before_a - after_a) & (after_b - before_b)
            moved_front = (after_a - before_a) & (before_b - after_b)
            if moved_back and moved_front and moved_back != moved_front:
                return True
    return False


def _transposed(a: Text, b: Text) -> bool:
    """The same content words, but for two short blocks (at most `_TRANSPOSED_WORDS` each)
    that trade places around words that stay where they are: "register my car in Texas
    after moving from California" vs "... California after moving from Texas". Not in a
    relation that reads the same both ways (`_SYMMETRIC_WORDS`)."""
    x, y = a.content_stems, b.content_stems
    if x == y or sorted(x) != sorted(y) or not _SYMMETRIC_WORDS.isdisjoint((*a.words, *b.words)):
        return False
    start = next(i for i, (u, v) in enumerate(zip(x, y, strict=True)) if u != v)
    end = len(x) - next(i for i, (u, v) in enumerate(zip(x[::-1], y[::-1], strict=True)) if u != v)
    wx, wy = x[start:end], y[start:end]  # the part that differs
    n = len(wx)
    for first in range(1, min(_TRANSPOSED_WORDS, n - 2) + 1):
        for last in range(1, min(_TRANSPOSED_WORDS, n - first - 1) + 1):
            head, middle, tail = wx[:first], wx[first : n - last], wx[n - last :]
            if wy == tail + middle + head:
                return True
    return False


def _swap(a: Text, b: Text) -> bool:
    """One content word (stemmed) swapped for one other, and at least two shared; a word
    and its misspelling are one word."""
    sa, sb = set(a.content_stems), set(b.content_stems)
    only_a, only_b = sa - sb, sb - sa
    if len(only_a) != 1 or len(only_b) != 1 or len(sa & sb) < 2:
        return False
    return not misspelled(next(iter(only_a)), next(iter(only_b)))


def signals(query: str | Text, cached: str | Text) -> tuple[str, ...]:
    """The guards that fire for this pair of prompts, in `GUARDS` order."""
    a = read(query) if isinstance(query, str) else query
    b = read(cached) if isinstance(cached, str) else cached
    fired = {
        "negation": a.negated != b.negated,
        "antonym": _antonym(a, b),
        "number": a.numbers != b.numbers,
        # Units and time words: a substitution (both sides have some, and they differ), not
        # one side being more specific ("how early" vs "how many hours").
        "unit": bool(a.units) and bool(b.units) and a.units != b.units,
        "date": bool(a.times) and bool(b.times) and a.times != b.times,
        "entity": _entity(a, b),
        "order": _order(a, b),
        "swap": _swap(a, b),
    }
    return tuple(name for name in GUARDS if fired[name])
