"""Near-miss guards: lexical signals that two close prompts still ask different things.

An embedding puts "enable 2FA" next to "disable 2FA", "5 miles" next to "50 miles", and
"capital of Australia" next to "capital of Austria": the words that flip the answer are a
small part of the sentence. Each guard compares the two prompts for one such difference:

    negation  one side negates ("not", "never", "n't", "without", ...) something the
              other is about, the other does not (a "not" in the pleasantries aside)
    antonym   one side has a word whose antonym only the other side has (enable/disable)
    number    a number swapped for another ("5 miles" vs "50 miles"), one side counting
              what the other mentions uncounted ("3 git commits" vs "my last commit"),
              or adding a year; "three", "3rd" and "3", "sixty thousand", "60k" and
              "60,000" are alike, a number about what the other does not mention is detail
    unit      the units of measure or currencies differ (km vs miles, GB vs MB)
    date      the time words differ (tomorrow/yesterday, Monday/Friday, January/June)
    entity    a proper noun on one side is absent from the other (Australia vs Austria)
    order     two things trading places: around a direction word (from X to Y vs from Y
              to X), or anywhere the rest stays ("Can I use my PS4 controller on a PS5?"
              vs "my PS5 controller on a PS4")
    swap      exactly one content word replaced by another, the rest the same
              ("side effects of ibuprofen" vs "side effects of aspirin"); not one
              word in another form ("max" and "maximum", "no" and "without")

Pure functions of the two texts, no model: cheap enough for every semantic candidate.
The policy decides what a signal does (veto the hit, or demand a higher similarity).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
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

#: The share of a negated sentence's content words the other prompt must have for the
#: negation to be about what both ask (shaped on the train split: at a quarter it still
#: fires on 90 % of the negation traps, and on 4.4 % of the paraphrases instead of 6.6 %).
_NEGATED_SHARE = 0.25

_ZERO_TO_NINETEEN = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
_TWENTY_TO_NINETY = "twenty thirty forty fifty sixty seventy eighty ninety"
_THIRD_TO_TWELFTH = "third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth"
_SMALL = {w: i for i, w in enumerate(_ZERO_TO_NINETEEN.split())}
_TENS = dict(zip(_TWENTY_TO_NINETY.split(), range(20, 100, 10), strict=True))
#: Words that multiply the number before them, inside a number ("two hundred and fifty")
#: or after digits ("1.5 million").
_MULTIPLIERS = {"dozen": 12, "hundred": 100}
#: Numbers whose "k" names a US retirement plan, not thousands: "401k" is "401(k)".
_PLAN_NUMBERS = frozenset({"401", "403", "457"})
_SCALES = {"thousand": 1000, "million": 10**6, "billion": 10**9}
_TIMES = _MULTIPLIERS | _SCALES
#: Numbers that stand alone. Ordinals from third on: "first" and "second" are far more
#: often an order or a unit of time ("my first car", "a second screen") than a rank.
_ALONE: dict[str, float] = {
    **dict(zip(_THIRD_TO_TWELFTH.split(), range(3, 13), strict=True)),
    "half": 0.5,
    "quarter": 0.25,
    "twice": 2,
}
#: What a number word reads as where `swap` and `order` compare words ("three" and "3"
#: alike). "one" is left out there and alone: far more often a pronoun ("which one is
#: better") than a count.
_NUMERALS = {w: str(v) for w, v in (_SMALL | _TENS | _TIMES | _ALONE).items() if w != "one"}
#: Words a missing count reads as: "a commit" or "one day" is a count of 1.
_ONE = _words("a an one single")
#: Letters after digits that make an ordinal (3rd, 5th), not a thing counted.
_ORDINAL_SUFFIXES = _words("st nd rd th")
_YEAR = re.compile(r"(19|20)[0-9][0-9]")
#: Content words after a number that say what it counts ("3 git commits": git, commit).
_COUNTED_WORDS = 2

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
    "yr": "year",
    "mph": "mph",
    "knot": "kn",
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
#: "X vs Y" ask one question in either order.
_SYMMETRIC_WORDS = _words(
    "between vs versus difference differences compare comparison similarities similar"
)
#: Words that join two things as equals ("baking soda and baking powder" reads the same
#: both ways), but also two clauses ("the first page landscape and the rest portrait" does
#: not): `_coordinated` tells them apart.
_COORDINATORS = _words("and or")

#: "a bit", "a little bit": not the unit.
_WORDS_BEFORE_A_BIT = _words("a little")
#: Endings that make a place's people or language: European, Japanese, Israeli.
_DEMONYM_ENDINGS = _words("n an ian ean ese ish i")

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
    #: The content stems of each sentence that has a negation in it.
    negated_sentences: tuple[frozenset[str], ...]
    numbers: frozenset[str]
    #: Each number with the content words after it (singular), what it counts:
    #: "3 git commits" -> ("3", {git, commit}).
    quantities: tuple[tuple[str, frozenset[str]], ...]
    singulars: frozenset[str]  # every word, singular: what a count is compared with
    units: frozenset[str]
    times: frozenset[str]
    entities: frozenset[str]  # lower-cased proper nouns (capitalised, not sentence-initial)
    #: The initials of each name of two or more capitalised words (stopwords end a name) or
    #: capitals ("United States", "JavaScript"), lower-cased, with the name's words: ("us",
    #: {united, states}).
    acronyms: tuple[tuple[str, frozenset[str]], ...]
    content: tuple[str, ...]  # content words in order
    content_at: tuple[int, ...]  # where each content word is in `words`
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
    stem_of = {w: _stem(w) for w in set(words)}
    quantities = _quantities(words, matches)
    units = frozenset(
        unit
        for i, w in enumerate(words)
        if (unit := _UNITS.get(w) or _UNITS.get(_singular(w)) or _UNITS.get(stem_of[w]))
        and not (unit == "bit" and i and words[i - 1] in _WORDS_BEFORE_A_BIT)
    )
    entities = set()
    sentences: list[list[str]] = []
    spaced = []
    previous_end = 0
    for i, m in enumerate(matches):
        w = m.group()
        gap = text[previous_end : m.start()].strip()  # what separates it from the last word
        spaced.append(not gap)
        sentence_start = (i == 0 and not gap) or (gap != "" and gap[-1] in ".?!:")
        if any(c.isupper() for c in w) and not sentence_start and w != "I" and w[:2] != "I'":
            entities.add(_normalise(w))
        if sentence_start or not sentences:
            sentences.append([])
        sentences[-1].append(words[i])
        previous_end = m.end()
    content_at = tuple(i for i, w in enumerate(words) if w not in _STOPWORDS)
    content = tuple(words[i] for i in content_at)
    return Text(
        words=words,
        stems=frozenset(stem_of.values()),
        negated_sentences=tuple(
            frozenset(_content_stem(w, stem_of[w]) for w in sentence if w not in _STOPWORDS)
            for sentence in sentences
            if not _NEGATIONS.isdisjoint(sentence)
        ),
        numbers=frozenset(value for value, _ in quantities),
        quantities=quantities,
        singulars=frozenset(_singular(w) for w in words),
        units=units,
        times=frozenset(w for w in words if w in _TIME_WORDS),
        entities=frozenset(entities),
        acronyms=_acronyms(raw, words, spaced),
        content=content,
        content_at=content_at,
        content_stems=tuple(_content_stem(w, stem_of[w]) for w in content),
        roles=_roles(words),
    )


def _content_stem(word: str, stem: str) -> str:
    """A content word as `swap`, `order` and `negation` compare it: its stem, a number word
    as its digits, a number without its separators ("5,000" as "5000")."""
    if word[:1].isdigit():
        return word.replace(",", "")
    return _NUMERALS.get(word) or stem


def _quantities(
    words: tuple[str, ...], matches: list[re.Match[str]]
) -> tuple[tuple[str, frozenset[str]], ...]:
    """Every number of a prompt, digits or spelled out, with what it counts. A number
    glued to the letters before it is part of a name ("PS5", "CO2", "cell B2"): it counts
    nothing, so only another number in its place (PS4) tells the prompts apart."""
    found = []
    i = 0
    while i < len(words):
        value, end = _number_at(words, matches, i)
        if value is None:
            i += 1
            continue
        named = i > 0 and words[i - 1][0].isalpha() and _touching(matches, i - 1)
        found.append((value, frozenset() if named else _counted(words, end)))
        i = end
    return tuple(found)


def _number_at(
    words: tuple[str, ...], matches: list[re.Match[str]], i: int
) -> tuple[str | None, int]:
    """The number that starts at word i, as the guards compare it ("60,000", "60000",
    "60k" and "sixty thousand" alike), and the index of the word after it."""
    if not words[i][0].isdigit():
        return _spelled_at(words, i)
    try:
        value = float(words[i].replace(",", ""))
    except ValueError:  # "1.2.3": a version, not an amount
        return words[i], i + 1
    end = i + 1
    if (
        end < len(words)
        and words[end] == "k"
        and _touching(matches, i)
        and words[i] not in _PLAN_NUMBERS
    ):
        value, end = value * 1000, end + 1
    while end < len(words) and words[end] in _TIMES:
        value, end = value * _TIMES[words[end]], end + 1
    return _numeral(value), end


def _spelled_at(words: tuple[str, ...], i: int) -> tuple[str | None, int]:
    """A number spelled out from word i ("thirty-one", "two hundred and fifty", "a
    hundred", "twenty thousand", "third"), read as far as it reads as one number."""
    if words[i] in _ALONE:
        return _numeral(_ALONE[words[i]]), i + 1
    total = current = 0
    end, last = i, ""
    while end < len(words):
        word = words[end]
        if word in _SMALL and (
            last in ("", "multiplier", "scale", "and") or (last == "tens" and _SMALL[word] < 10)
        ):
            current, last = current + _SMALL[word], "small"
        elif word in _TENS and last in ("", "multiplier", "scale", "and"):
            current, last = current + _TENS[word], "tens"
        elif word in _MULTIPLIERS and last in ("", "small", "tens"):
            current, last = (current or 1) * _MULTIPLIERS[word], "multiplier"
        elif word in _SCALES and last in ("", "small", "tens", "multiplier"):
            total, current, last = total + (current or 1) * _SCALES[word], 0, "scale"
        elif (
            word == "and"
            and last in ("multiplier", "scale")
            and end + 1 < len(words)
            and (words[end + 1] in _SMALL or words[end + 1] in _TENS)
        ):
            last = "and"
        else:
            break
        end += 1
    if end == i or words[i:end] == ("one",):
        return None, i
    return _numeral(total + current), end


def _numeral(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _counted(words: tuple[str, ...], end: int) -> frozenset[str]:
    """The first content words after a number that ends before word `end`, singular: what
    it counts ("3 git commits", "2 of the 3 doses", "5th-generation iPad")."""
    counted: list[str] = []
    for word in words[end : end + _COUNTED_WORDS + 2]:
        if word[0].isdigit() or word in _NUMERALS or word in _STOPWORDS:
            continue
        if word in _ORDINAL_SUFFIXES and not counted:
            continue
        counted.append(_singular(word))
        if len(counted) == _COUNTED_WORDS:
            break
    return frozenset(counted)


def _singular(word: str) -> str:
    """A plural as its singular, for matching a count with what it counts (the stemmer
    reads "order" as "ord" but "orders" as "order")."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _touching(matches: list[re.Match[str]], i: int) -> bool:
    """Whether word i+1 follows word i with nothing between ("60k", not "60 k")."""
    return matches[i].end() == matches[i + 1].start()


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


def _negates(a: Text, b: Text) -> bool:
    """Whether `a` negates something `b` is about: a sentence with a negation, at least
    `_NEGATED_SHARE` of whose content words `b` has too. A "not" in the pleasantries
    around a request ("Trying not to buy more than I need. Can I use my PS4 controller on
    a PS5?") is not about the question."""
    other = set(b.content_stems)
    return any(
        len(sentence & other) >= max(1, _NEGATED_SHARE * len(sentence))
        for sentence in a.negated_sentences
    )


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


def _number(a: Text, b: Text) -> bool:
    """A number swapped for another ("5 miles" vs "50 miles"), or one side counting
    something the other mentions uncounted. A number one side adds about something the
    other does not mention is detail ("I have 2 million rows. How do I sample 1,000?" vs
    "how do I sample 1,000 rows")."""
    count_a = Counter(value for value, _ in a.quantities)
    count_b = Counter(value for value, _ in b.quantities)
    if count_a - count_b and count_b - count_a:  # "20 cm and 20 cm" vs "20 cm and 24 cm"
        return True
    only_a, only_b = a.numbers - b.numbers, b.numbers - a.numbers
    return _counts_more(a, only_a, b) or _counts_more(b, only_b, a)


def _counts_more(a: Text, added: frozenset[str], b: Text) -> bool:
    """Whether `a` counts something `b` mentions without that count: "3 git commits" vs
    "my last git commit" (a commit, one day: a count of 1), "the first 2 sheets" vs
    "every sheet"."""
    one = not _ONE.isdisjoint(b.words)
    if any(_YEAR.fullmatch(v) for v in added) and not any(_YEAR.fullmatch(v) for v in b.numbers):
        return True  # "in 2022", "since 2010": a year that narrows the question
    return any(
        value in added and not (value == "1" and one) and not counted.isdisjoint(b.singulars)
        for value, counted in a.quantities
    )


def _acronyms(
    raw: list[str], words: tuple[str, ...], spaced: list[bool]
) -> tuple[tuple[str, frozenset[str]], ...]:
    """Names that can be written by their initials: runs of capitalised words with only
    spaces between (`spaced`: nothing but spaces before the word) ("United States": us)
    and words with capitals inside ("JavaScript": js)."""
    names: list[list[int]] = []
    run: list[int] = []
    for i, word in enumerate(raw):
        capitalised = word[:1].isupper() and word != "I" and words[i] not in _STOPWORDS
        if not (capitalised and spaced[i]):
            names.append(run)
            run = []
        if capitalised:
            run.append(i)
    names.append(run)
    found = [
        ("".join(raw[i][0] for i in name).lower(), frozenset(words[i] for i in name))
        for name in names
        if len(name) >= 2
    ]
    for word, normal in zip(raw, words, strict=True):
        capitals = "".join(c for c in word if c.isupper())
        if len(capitals) >= 2 and word[0].isupper() and not word.isupper():
            found.append((capitals.lower(), frozenset([normal])))
    return tuple(found)


def _unmatched(a: Text, b: Text) -> set[str]:
    """Names of `a` that `b` mentions in no form: not as written, mistyped, by their
    initials ("US" for United States, "JS" for JavaScript) or spelled out for initials,
    nor as the people of a place ("Europe" and "European")."""
    words = set(b.words) | b.stems
    spelled_out = {w for initials, name in a.acronyms if initials in words for w in name}
    named = a.entities - words - spelled_out - {initials for initials, _ in b.acronyms}
    return {
        n for n in named if not any(misspelled(n, w, shortest=6) or _demonym(n, w) for w in words)
    }


def _demonym(x: str, y: str) -> bool:
    """Whether one word is the other with the ending of its people: Europe and European,
    Japan and Japanese, Israel and Israeli (not Java and JavaScript)."""
    longer, shorter = (x, y) if len(x) > len(y) else (y, x)
    return longer.startswith(shorter) and longer[len(shorter) :] in _DEMONYM_ENDINGS


def _entity(a: Text, b: Text) -> bool:
    """A swapped proper noun: each side names one the other does not mention in any form
    (`_unmatched`: any case, mistyped, by initials, as its people). One side adding a name
    ("HTTP 502" vs "502") is detail, not a different thing."""
    return bool(_unmatched(a, b)) and bool(_unmatched(b, a))


def _order(a: Text, b: Text) -> bool:
    """Two things trading places: around the same direction word (from X to Y vs from Y to
    X, baking soda for baking powder vs baking powder for baking soda), or anywhere else
    with the words between them staying put (my PS4 controller on a PS5 vs my PS5
    controller on a PS4)."""
    return _roles_swapped(a, b) or _transposed(a, b)


def _roles_swapped(a: Text, b: Text) -> bool:
    for word, before_a, after_a in a.roles:
        same = [(before, after) for other, before, after in b.roles if other == word]
        if not same:
            continue
        # A word used twice ("for another year ... for 3 years") is compared with its use
        # in `b` that shares the most words with this one, not with every use.
        around = before_a | after_a
        before_b, after_b = max(same, key=lambda role: len(around & (role[0] | role[1])))
        moved_back = (before_a - after_a) & (after_b - before_b)
        moved_front = (after_a - before_a) & (before_b - after_b)
        if moved_back and moved_front and moved_back != moved_front:
            return True
    return False


def _transposed(a: Text, b: Text) -> bool:
    """The same content words, but for two short blocks (at most `_TRANSPOSED_WORDS` each)
    that trade places around words that stay where they are: "register my car in Texas
    after moving from California" vs "... California after moving from Texas". Not in a
    relation that reads the same both ways (`_SYMMETRIC_WORDS`, `_coordinated`)."""
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
                return not _coordinated(a, start, start + first, start + n - last, end)
    return False


def _coordinated(text: Text, start: int, middle: int, tail: int, end: int) -> bool:
    """Whether two transposed blocks of `text`'s content words, [start, middle) and
    [tail, end), are two things joined as equals: an "and" or "or" between them, and the
    content words between them the ones both share, said before the first or after the
    second ("baking soda and baking powder", "brown rice or white rice")."""
    stems = text.content_stems
    at = text.content_at
    if _COORDINATORS.isdisjoint(text.words[at[middle - 1] + 1 : at[tail]]):
        return False
    shared, k = stems[middle:tail], tail - middle
    return (start >= k and stems[start - k : start] == shared) or stems[end : end + k] == shared


def _swap(a: Text, b: Text) -> bool:
    """One content word (stemmed) swapped for one other, and at least two shared; a word
    and its misspelling are one word, as written or stemmed (a misspelling often stems
    differently: "vinegar" and "vinager" stem to "vinegar" and "vinag")."""
    sa, sb = set(a.content_stems), set(b.content_stems)
    only_a, only_b = sa - sb, sb - sa
    if len(only_a) != 1 or len(only_b) != 1 or len(sa & sb) < 2:
        return False
    names = a.entities | b.entities
    return not any(
        _one_word(x, y) or _same_in_other_form(x, y, names)
        for x in _forms(a, next(iter(only_a)))
        for y in _forms(b, next(iter(only_b)))
    )


def _same_in_other_form(x: str, y: str, names: frozenset[str]) -> bool:
    """Whether `swap` reads `x` and `y` as one word written in two forms: two negations
    ("don't" and "not": whether they negate the same thing is `negation`'s question), or a
    word and its clipping or derived form ("prep" and "prepare", "temp" and "temperature",
    "conjugate" and "conjugation"). One letter more is another word ("car" and "card")
    unless it is a final "e" (the stemmer's "vot", from "voting", and "vote"); a name is
    never a form of another ("Java" and "JavaScript")."""
    if x in _NEGATIONS and y in _NEGATIONS:
        return True
    longer, shorter = (x, y) if len(x) > len(y) else (y, x)
    extra = longer[len(shorter) :]
    return (
        len(shorter) >= 3
        and longer.startswith(shorter)
        and (extra == "e" or len(extra) >= 2)
        and x not in names
        and y not in names
    )


#: Words typed for each other so often that `swap` reads them as one.
_CONFUSED = frozenset({frozenset({"then", "than"})})


def _one_word(x: str, y: str) -> bool:
    """Whether `swap` reads `x` and `y` as one word: `misspelled`, or in short words (which
    `misspelled` leaves alone) the slips that seldom make another word: two neighbouring
    letters swapped ("tset", "mkae"), a letter doubled or undoubled ("wal", "upp", "too"),
    and the `_CONFUSED` pairs. Never two numbers: "500" and "5000" differ by a zero."""
    if x[:1].isdigit() and y[:1].isdigit():
        return False
    if misspelled(x, y) or frozenset({x, y}) in _CONFUSED:
        return True
    if x[:1] != y[:1]:
        return False
    if len(x) == len(y) >= 3:
        diff = [i for i, (u, v) in enumerate(zip(x, y, strict=True)) if u != v]
        i, j = diff if len(diff) == 2 else (0, 0)
        return j == i + 1 and (x[i], x[j]) == (y[j], y[i])
    longer, shorter = (x, y) if len(x) > len(y) else (y, x)
    return len(longer) == len(shorter) + 1 >= 3 and any(
        longer[i] == longer[i - 1] and longer[:i] + longer[i + 1 :] == shorter
        for i in range(1, len(longer))
    )


def _forms(text: Text, stem: str) -> set[str]:
    """A content stem of `text` and the words it came from."""
    return {stem} | {w for w, s in zip(text.content, text.content_stems, strict=True) if s == stem}


def signals(query: str | Text, cached: str | Text) -> tuple[str, ...]:
    """The guards that fire for this pair of prompts, in `GUARDS` order."""
    a = read(query) if isinstance(query, str) else query
    b = read(cached) if isinstance(cached, str) else cached
    fired = {
        "negation": _negates(a, b) != _negates(b, a),
        "antonym": _antonym(a, b),
        "number": _number(a, b),
        # Units and time words: a substitution (both sides have some, and they differ), not
        # one side being more specific ("how early" vs "how many hours").
        "unit": bool(a.units) and bool(b.units) and a.units != b.units,
        "date": bool(a.times) and bool(b.times) and a.times != b.times,
        "entity": _entity(a, b),
        "order": _order(a, b),
        "swap": _swap(a, b),
    }
    return tuple(name for name in GUARDS if fired[name])
