"""The antonym pairs the guards know (enable/disable, increase/decrease, ...) and their forms.

Apart from the guards because training reads them too (augment swaps a word for its
antonym to make traps): the tuned model's recipe depends on this list, not on how the
guards use it, so a change to a guard rebuilds no model. Standard library only.
"""

from __future__ import annotations

ANTONYMS = [
    ("enable", "disable"),
    ("increase", "decrease"),
    ("add", "remove"),
    ("open", "close"),
    ("start", "stop"),
    ("buy", "sell"),
    ("before", "after"),
    ("win", "lose"),
    ("maximum", "minimum"),
    ("max", "min"),
    ("import", "export"),
    ("encrypt", "decrypt"),
    ("upload", "download"),
    ("install", "uninstall"),
    ("allow", "deny"),
    ("allow", "block"),
    ("accept", "reject"),
    ("true", "false"),
    ("hot", "cold"),
    ("fast", "slow"),
    ("best", "worst"),
    ("good", "bad"),
    ("more", "less"),
    ("cheap", "expensive"),
    ("positive", "negative"),
    ("include", "exclude"),
    ("push", "pull"),
    ("show", "hide"),
    ("lock", "unlock"),
    ("connect", "disconnect"),
    ("login", "logout"),
    ("subscribe", "unsubscribe"),
    ("compress", "decompress"),
    ("encode", "decode"),
    ("serialize", "deserialize"),
    ("first", "last"),
    ("left", "right"),
    ("north", "south"),
    ("east", "west"),
    ("high", "low"),
    ("long", "short"),
    ("light", "dark"),
    ("male", "female"),
    ("advantage", "disadvantage"),
    ("pro", "con"),
    ("love", "hate"),
    ("rise", "fall"),
    ("gain", "lose"),
    ("arrive", "depart"),
    ("import", "export"),
    ("safe", "dangerous"),
    ("healthy", "unhealthy"),
    ("legal", "illegal"),
    ("possible", "impossible"),
    ("easy", "hard"),
    ("easy", "difficult"),
    ("big", "small"),
    ("large", "small"),
    ("old", "new"),
    ("young", "old"),
    ("early", "late"),
    ("inside", "outside"),
    ("above", "below"),
    ("upper", "lower"),
    ("input", "output"),
    ("send", "receive"),
    ("encrypt", "decrypt"),
    ("attack", "defend"),
    ("borrow", "lend"),
    ("mount", "unmount"),
    ("merge", "split"),
    ("create", "delete"),
    ("join", "leave"),
    ("like", "dislike"),
    ("agree", "disagree"),
    ("always", "never"),
    ("all", "none"),
    ("success", "failure"),
    ("succeed", "fail"),
    ("pass", "fail"),
    ("heat", "cool"),
    ("wet", "dry"),
    ("full", "empty"),
    ("rich", "poor"),
    ("strong", "weak"),
    ("cause", "cure"),
    ("prevent", "cause"),
    ("pay", "refund"),
    ("hire", "fire"),
    ("up", "down"),
    ("upgrade", "downgrade"),
    ("underweight", "overweight"),
    ("underrated", "overrated"),
    ("asleep", "awake"),
    ("sunrise", "sunset"),
    ("raise", "lower"),
    ("precede", "succeed"),
    ("predecessor", "successor"),
    ("largest", "smallest"),
    ("biggest", "smallest"),
    ("most", "least"),
]


def _inflections(word: str) -> set[str]:
    """The forms a word list entry stands for: plurals, -ed/-ing, comparatives."""
    forms = {word, word + "s", word + "es", word + "ed", word + "ing", word + "er", word + "est"}
    if word.endswith("e"):
        forms |= {word + "d", word + "r", word + "st", word[:-1] + "ing"}
    if word.endswith("y"):
        forms |= {word[:-1] + "ies", word[:-1] + "ied", word[:-1] + "ier", word[:-1] + "iest"}
    if len(word) >= 3 and word[-1] not in "aeiouwy" and word[-2] in "aeiou":
        forms |= {word + word[-1] + suffix for suffix in ("ed", "ing", "er", "est")}
    return forms


#: word form -> its antonyms' base words, and form -> base word
BASE: dict[str, str] = {}
#: base word -> the base words of its antonyms (also what training edits swap)
ANTONYM_OF: dict[str, set[str]] = {}
for _x, _y in ANTONYMS:
    for _word, _other in ((_x, _y), (_y, _x)):
        for _form in _inflections(_word):
            BASE.setdefault(_form, _word)
        ANTONYM_OF.setdefault(_word, set()).add(_other)
