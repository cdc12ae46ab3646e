"""Does the model's summary make sense, and is it true of the window? The nonsense detector.

Constrained decoding keeps the answer's form and its labels to the window's categories, so a
random model's answer parses and its labels look right; the summary, the model's own words, is
what shows whether it read the window. A summary is rejected (the whole answer falls back to
the extractive profile, the reason naming the check) when:

- **markup**: it holds brackets, braces, markup characters, unbalanced parentheses or pieces
  of the answer's JSON;
- **not words**: a word of it is neither an English word (the ``english-words`` lists, with
  plural, past and -ing forms) nor a word of the window's items;
- **off topic**: its content words are not the window's (fewer than half are words of the
  items, and none is close to an item in embedding space, see ``llm.support``);
- **wrong lead**: the first interest it names carries less than half the activity of the
  window's leading one, and is not a sub-category of it ("Likes mountain biking" for a window
  that is 75% beekeeping);
- **ungrounded**: it names something no item of the window says ("riding a road bike").
"""

from __future__ import annotations

import re
from functools import cache

from service.core.records import Window, WindowEvent
from service.summarizers.llm.support import (
    LETTERS,
    WindowSupport,
    content_words,
    stem,
)
from service.summarizers.weighting import activity_shares
from service.summarizers.words import JOINING_WORDS, NEUTRAL_WORDS, QUALIFIERS

MARKUP, NOT_WORDS, OFF_TOPIC, WRONG_LEAD, UNGROUNDED = (
    "markup",
    "not words",
    "off topic",
    "wrong lead",
    "ungrounded",
)
# Checked on the generation, not the text (``LLMSummarizer``): under constrained decoding every
# word is a window's word, so what tells a model that read the window from noise is whether it
# wanted the words it wrote.
NOT_CHOSEN = "not the model's words"
CHECKS = (MARKUP, NOT_WORDS, OFF_TOPIC, WRONG_LEAD, UNGROUNDED, NOT_CHOSEN)
# The least mean log-probability (natural log, the model's own distribution before the grammar)
# of a summary's tokens: measured in docs/EVALUATION.md ("Nonsense caught").
MIN_SUMMARY_LOGPROB = -3.0
# The first interest named must carry at least this share of the leading interest's activity:
# of two near-equal interests either may come first, of 75% against 25% only the first.
MIN_LEAD_SHARE = 0.5
# A word that shares its first letters with a word of the items is the same word in another
# form ("thrill" and "thriller", "science-fiction" and "Sci-Fi" expanded).
_SAME_WORD_PREFIX = 5
_ALLOWED = re.compile(r"[^\W_]|[\s.,;:!?'\u2019\u2018\"\u201c\u201d()&/%+\-\u2013\u2014]")
_JSON_PIECE = re.compile(r'"\s*[:,\]}]|\b(?:summary|interests|label|weight|evidence)"\s*:')


class Nonsense(ValueError):
    """Why a summary cannot be shown: ``check`` names the failed check (one of ``CHECKS``)."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check


def summary_vocabulary(window: Window) -> set[str]:
    """The words a summary of ``window`` may use under constrained decoding: its items' own
    words, and words that qualify or join them."""
    return WindowSupport(window).letter_words | QUALIFIERS | JOINING_WORDS | NEUTRAL_WORDS


def check_summary(summary: str, window: Window, support: WindowSupport) -> None:
    """Raise ``Nonsense`` for a summary that fails any of the checks, in the order above."""
    _check_markup(summary)
    _check_words(summary, support)
    if content_words(summary) and not support.check(summary).supported:
        raise Nonsense(OFF_TOPIC, "its words are not the window items' words")
    _check_lead(summary, window)
    _check_grounded(summary, support)


def _check_markup(summary: str) -> None:
    stray = sorted({char for char in summary if not _ALLOWED.fullmatch(char)})
    if stray:
        raise Nonsense(MARKUP, "characters " + " ".join(repr(c) for c in stray))
    if _JSON_PIECE.search(summary):
        raise Nonsense(MARKUP, "a piece of the answer's JSON")
    depth = 0
    for char in summary:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth:
        raise Nonsense(MARKUP, "unbalanced parentheses")


def _check_words(summary: str, support: WindowSupport) -> None:
    own = support.letter_words
    strange = [
        word
        for word in dict.fromkeys(w.lower() for w in LETTERS.findall(summary.replace("'s", "")))
        if word not in own and not (is_english_word(word) and (len(word) > 1 or word in "ai"))
    ]
    if strange:
        raise Nonsense(NOT_WORDS, ", ".join(repr(word) for word in strange[:5]))


def _check_lead(summary: str, window: Window) -> None:
    shares = activity_shares(window)
    named = named_labels(summary, shares)
    if not named:
        return  # it names items or their words, not a category: nothing to rank
    leading = max(shares, key=lambda label: shares[label])
    first = named[0]
    if shares[first] < MIN_LEAD_SHARE * shares[leading] and not _within(
        first, leading, window, shares
    ):
        raise Nonsense(
            WRONG_LEAD,
            f"it leads with {first!r} ({shares[first]:.0%} of the window), "
            f"but {leading!r} leads ({shares[leading]:.0%})",
        )


def _within(part: str, whole: str, window: Window, shares: dict[str, float]) -> bool:
    """Most of ``part``'s activity is on items that carry ``whole`` too: a sub-category of the
    leading one ("Spaceflight" in a window all "Space & Astronomy") leads with the same."""
    both = activity_shares(window, lambda we: _carries_both(we, part, whole))
    return both.get(part, 0.0) >= MIN_LEAD_SHARE * shares.get(part, 0.0)


def _carries_both(joined: WindowEvent, part: str, whole: str) -> list[str]:
    categories = {c.strip() for c in joined.item.categories} if joined.item else set()
    return [part] if {part, whole} <= categories else []


def _check_grounded(summary: str, support: WindowSupport) -> None:
    prefixes = {word[:_SAME_WORD_PREFIX] for word in support.vocabulary}
    unsaid = [
        word
        for word in dict.fromkeys(content_words(summary))
        if word not in support.vocabulary
        and word not in QUALIFIERS
        and word not in JOINING_WORDS
        and not (len(word) >= _SAME_WORD_PREFIX and word[:_SAME_WORD_PREFIX] in prefixes)
    ]
    if unsaid:
        raise Nonsense(UNGROUNDED, "no item of the window says " + ", ".join(map(repr, unsaid)))


def named_labels(text: str, labels: dict[str, float] | list[str]) -> list[str]:
    """The labels ``text`` names, in the order it first names them (a label is named by its
    content words in a run, a one-word label also by another form of the word)."""
    words = content_words(text)
    found = []
    for label in labels:
        wanted = content_words(label)
        if not wanted:
            continue
        for at in range(len(words) - len(wanted) + 1):
            if words[at : at + len(wanted)] == wanted or (
                len(wanted) == 1 and _same_word(words[at], wanted[0])
            ):
                found.append((at, label))
                break
    return [label for _, label in sorted(found)]


def _same_word(word: str, other: str) -> bool:
    size = _SAME_WORD_PREFIX
    return len(word) >= size and len(other) >= size and word[:size] == other[:size]


def is_english_word(word: str) -> bool:
    """``word`` (lower case) or its stem is in the English word lists."""
    words = _english_words()
    return any(form in words for form in _forms(word))


def _forms(word: str) -> list[str]:
    """The word and what it may be a form of: plurals, past tenses, -ing and -er forms."""
    forms = [word, stem(word)]
    for suffix, replacements in (
        ("ies", ("y",)),
        ("es", ("", "e")),
        ("s", ("",)),
        ("ied", ("y",)),
        ("ed", ("", "e")),
        ("ing", ("", "e")),
        ("ers", ("", "e")),
        ("er", ("", "e")),
        ("ly", ("",)),
    ):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            base = word[: -len(suffix)]
            forms += [base + r for r in replacements]
            if len(base) > 2 and base[-1] == base[-2]:  # "running", "planned"
                forms.append(base[:-1])
    return forms


@cache
def _english_words() -> frozenset[str]:
    from english_words import get_english_words_set

    return frozenset(get_english_words_set(["web2", "gcide"], alpha=True, lower=True))
