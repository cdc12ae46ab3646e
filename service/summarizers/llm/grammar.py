"""Schema-constrained decoding: the model can only write answers of the profile's JSON form.

transformers has no JSON-schema decoding of its own, but a ``LogitsProcessor`` may decide which
tokens come next. ``AnswerGrammar`` is a character automaton for the one form we ask for::

    {"summary": "…", "interests": [{"label": "…", "weight": 0.4, "evidence": ["id", …]}, …]}

with the evidence ids restricted to the items of the window (no id twice in one interest),
bounded strings, at most ``max_interests`` interests, and a weight in [0, 1]. Given the window's
``labels`` (its items' categories, each with the items that carry it), a label can only be one of
them, each once, and its evidence only items that carry it: a 135M model left free writes
"Likes ," or a title's first words, but picks the window's topics well when they are the only
way on. (Then the labels prove nothing about the model; the summary, still free text, is what
the garbage detector in ``llm.validation`` judges.)
Whatever the model and whatever the item texts say, the answer parses and cites only the
window. The validation in ``llm.validation.parse_answer`` still runs: it is the contract, this only
makes a valid answer the likely one.

``llm.decoding`` turns it into a transformers logits processor over tokens.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# One sentence; a long string is where a small model starts to loop.
SUMMARY_CHARS = 80  # a 135M model that writes a long summary never reaches the interests
LABEL_CHARS = 40
LABEL_WORDS = 4  # a topic, not a title (a small model likes to copy the first title it read)
# Ids cited per interest: a few that show it (a model left alone lists the whole window).
MAX_EVIDENCE = 3

# What follows each part (a string's closing quote is the string's own).
_AFTER_SUMMARY = ', "interests": [{"label": "'
_AFTER_LABEL = ', "weight": '
_WEIGHT_TO_EVIDENCE = ', "evidence": ["'
_NEXT_ID = ', "'
_NEXT_INTEREST = ', {"label": "'
_CLOSE = "]}"
_WEIGHT_DONE = re.compile(r"0\.\d{1,2}|1(\.0)?")
_WEIGHT_PREFIX = re.compile(r"0(\.\d{0,2})?|1(\.0?)?")
_LABEL_PUNCTUATION = frozenset(" -&'/,.+")
_NOT_IN_SUMMARY = frozenset("|[]{}<>$#_\\`*=~^@")
# Between the words of a summary kept to its window's words: a sentence's punctuation only.
_SUMMARY_PUNCTUATION = frozenset(" ,.;:!?'-&/")

LITERAL, SUMMARY, LABEL, WEIGHT, EVIDENCE, AFTER_ID, AFTER_INTEREST, DONE = range(8)


class AnswerGrammar:
    """Where one answer is in the form, fed a character at a time (the prefilled
    ``ANSWER_PREFIX`` is already behind it: it starts inside the summary string)."""

    __slots__ = (
        "window_ids", "ids", "longest_id", "max_interests", "mode", "literal", "after", "text",
        "interests", "cited", "labels", "label_keys", "longest_label", "used", "word_first",
        "summary_words", "first_label",
    )  # fmt: skip

    def __init__(
        self,
        item_ids: Sequence[str],
        max_interests: int,
        labels: Mapping[str, Sequence[str]] | None = None,
        word_first: bool = False,
        summary_words: Iterable[str] | None = None,
        first_label: str | None = None,
    ) -> None:
        self.window_ids = tuple(sorted({_escaped(i) for i in item_ids}))
        self.ids = self.window_ids  # the ids the current interest may cite
        self.longest_id = max((len(i) for i in self.ids), default=0)
        self.max_interests = max_interests
        self.mode, self.literal, self.after, self.text = SUMMARY, "", SUMMARY, ""
        self.interests, self.cited = 0, frozenset[str]()
        # label -> the ids that may back it; empty: labels are free text.
        self.labels = _label_table(labels or {}, self.window_ids)
        self.label_keys = tuple(sorted(self.labels))
        self.longest_label = max((len(label) for label in self.labels), default=0)
        self.used = frozenset[str]()  # labels already given
        # The summary continues a prefilled word ("Likes"): a space, then a word. (Prefilled
        # text ending in a space makes a BPE model pick an odd token next.)
        self.word_first = word_first
        # Given, the summary's words are these (lower case; any case written): the window's own
        # words and words that join them, so whatever it names is in the window.
        self.summary_words = (
            None if summary_words is None else tuple(sorted({w.lower() for w in summary_words}))
        )
        # Given (and one of ``labels``), the first interest is this one: the window's leading
        # category, which the summary's lead names too; the model chooses the others.
        first = None if first_label is None else _escaped(" ".join(first_label.split()))
        self.first_label = first if first in self.labels else None

    def copy(self) -> AnswerGrammar:
        twin = AnswerGrammar.__new__(AnswerGrammar)
        for name in self.__slots__:
            setattr(twin, name, getattr(self, name))
        return twin

    @property
    def done(self) -> bool:
        return self.mode == DONE

    @property
    def in_summary(self) -> bool:
        return self.mode == SUMMARY

    def feed(self, text: str) -> bool:
        """Advance over ``text``; False (and a half-advanced state) when it leaves the form."""
        return all(self._step(char) for char in text)

    def accepts(self, text: str) -> bool:
        return self.after_text(text) is not None

    def after_text(self, text: str) -> AnswerGrammar | None:
        """The state after ``text`` (self is left as it is), or None if ``text`` is refused."""
        twin = self.copy()
        return twin if text and twin.feed(text) else None

    def chars_to_close(self) -> int:
        """An upper bound on the characters still needed to close the answer, taking the
        shortest way (one more character per open string, the longest id)."""
        part = self.after if self.mode == LITERAL else self.mode
        return len(self.literal) + _CLOSING_CHARS[part](self)

    def next_chars(self) -> set[str]:
        """Characters that may come next, where they are few (empty: too many to list)."""
        if self.mode == LITERAL:
            return {self.literal[0]}
        if self.mode == LABEL and self.labels:
            at = len(self.text)
            following = {label[at : at + 1] for label in self._open_labels()}
            return {c for c in following | {'"'} if c and self.accepts(c)}
        if self.mode in (SUMMARY, LABEL):
            return {'"'} if self.text.strip() and self._string_full() else set()
        if self.mode == EVIDENCE:
            following = {item_id[len(self.text) : len(self.text) + 1] for item_id in self.ids}
            return {c for c in following | {'"'} if c and self.accepts(c)}
        if self.mode == DONE:
            return set()
        return {c for c in "0123456789.,]" if self.accepts(c)}

    # --- the automaton -------------------------------------------------------------------

    def _step(self, char: str) -> bool:
        mode = self.mode
        if mode == LITERAL:
            if char != self.literal[0]:
                return False
            self.literal = self.literal[1:]
            if not self.literal:
                self.mode, self.text = self.after, ""
            return True
        if mode in (SUMMARY, LABEL):
            return self._string_char(char)
        if mode == WEIGHT:
            return self._weight_char(char)
        if mode == EVIDENCE:
            return self._id_char(char)
        if mode == AFTER_ID:
            if char == "," and self._unused_ids() and len(self.cited) < MAX_EVIDENCE:
                return self._expect(_NEXT_ID[1:], EVIDENCE)
            if char == "]":
                self.interests += 1
                return self._expect("}", AFTER_INTEREST)
            return False
        if mode == AFTER_INTEREST:
            if char == "," and self.interests < self.max_interests and self._labels_left():
                return self._expect(_NEXT_INTEREST[1:], LABEL)
            return char == "]" and self._expect("}", DONE)
        return False  # DONE: nothing more

    def _string_char(self, char: str) -> bool:
        if self.mode == LABEL and self.labels:
            return self._label_choice_char(char)
        if char == '"':
            # Not blank. (A repeated label is left to validation: refusing it here could leave
            # a full label no way out.)
            if not self.text.strip():
                return False
            if self.mode == SUMMARY:
                return self._expect(_AFTER_SUMMARY, LABEL)
            return self._expect(_AFTER_LABEL, WEIGHT)
        if self._string_full() or char == "\\" or not char.isprintable():
            return False
        # The prompt's column separator is an echo; brackets, braces and markup characters have
        # no place in a sentence about someone's interests (a random model's favourites).
        if self.mode == SUMMARY and char in _NOT_IN_SUMMARY:
            return False
        # Digits: a small model copies the numbers of the item ids ("Likes 12,000,000...");
        # a topic needs none.
        if char.isdigit():
            return False
        if (
            self.mode == SUMMARY
            and self.word_first
            and len(self.text) < 2
            and not (char.isalpha() if self.text else char == " ")
        ):
            return False
        if self.mode == LABEL and not (char.isalnum() or char in _LABEL_PUNCTUATION):
            return False
        if self.mode == SUMMARY and self.summary_words and not self._summary_word_char(char):
            return False
        if self.mode == LABEL and char == " " and len(self.text.split()) >= LABEL_WORDS:
            return False
        self.text += char
        return True

    def _summary_word_char(self, char: str) -> bool:
        assert self.summary_words
        """A letter must go on towards one of ``summary_words``; anything else may follow only
        a whole one (or no word), and is a space or a sentence's punctuation."""
        start = len(self.text)
        while start and self.text[start - 1].isalpha():
            start -= 1
        word = self.text[start:].lower()
        if char.isalpha():
            # Without ``word_first`` the summary goes on from a prefilled lead's last word
            # ("Likes drama"): a letter first would glue a new word to it ("dramaop").
            if not self.text and not self.word_first:
                return False
            return _has_prefix(self.summary_words, word + char.lower())
        if char not in _SUMMARY_PUNCTUATION:
            return False
        return not word or _has_word(self.summary_words, word)

    def _label_choice_char(self, char: str) -> bool:
        """A label that must be one of ``labels``: a prefix of one not given yet, closed only
        when whole; then this interest may cite only the items that carry it."""
        if char == '"':
            if self.text not in self._open_labels() or self.text not in self.labels:
                return False
            self.used = self.used | {self.text}
            self.ids = self.labels[self.text]
            return self._expect(_AFTER_LABEL, WEIGHT)
        if not self._open_labels(self.text + char):
            return False
        self.text += char
        return True

    def _open_labels(self, prefix: str | None = None) -> list[str]:
        prefix = self.text if prefix is None else prefix
        if self.first_label and not self.used:  # the first interest's label is set
            return [self.first_label] if self.first_label.startswith(prefix) else []
        start = bisect.bisect_left(self.label_keys, prefix)
        found = []
        for label in self.label_keys[start:]:
            if not label.startswith(prefix):
                break
            if label not in self.used:
                found.append(label)
        return found

    def _labels_left(self) -> bool:
        return not self.labels or len(self.used) < len(self.labels)

    def _string_full(self) -> bool:
        return len(self.text) >= (SUMMARY_CHARS if self.mode == SUMMARY else LABEL_CHARS)

    def _weight_char(self, char: str) -> bool:
        if char == ",":
            return bool(_WEIGHT_DONE.fullmatch(self.text)) and self._expect(
                _WEIGHT_TO_EVIDENCE[1:], EVIDENCE
            )
        if not _WEIGHT_PREFIX.fullmatch(self.text + char):
            return False
        self.text += char
        return True

    def _id_char(self, char: str) -> bool:
        # An id's own (escaped) quote continues it; only a quote after a whole id ends it.
        if self._unused_id_starts_with(self.text + char):
            self.text += char
            return True
        if char != '"' or self.text not in self.ids or self.text in self.cited:
            return False
        self.cited = self.cited | {self.text}
        self.mode = AFTER_ID
        return True

    def _unused_id_starts_with(self, prefix: str) -> bool:
        start = bisect.bisect_left(self.ids, prefix)
        for item_id in self.ids[start:]:
            if not item_id.startswith(prefix):
                return False
            if item_id not in self.cited:
                return True
        return False

    def _unused_ids(self) -> bool:
        return len(self.cited) < len(self.ids)

    def _expect(self, literal: str, after: int) -> bool:
        if after == LABEL:
            self.cited = frozenset()  # each interest cites its own evidence
            self.ids = self.window_ids
        self.mode, self.literal, self.after, self.text = LITERAL, literal, after, ""
        if not literal:
            self.mode = after
        return True


def _has_prefix(words: Sequence[str], prefix: str) -> bool:
    at = bisect.bisect_left(words, prefix)
    return at < len(words) and words[at].startswith(prefix)


def _has_word(words: Sequence[str], word: str) -> bool:
    at = bisect.bisect_left(words, word)
    return at < len(words) and words[at] == word


def _escaped(text: object) -> str:
    """As it appears inside a JSON string (an id or a label may hold a quote or a backslash)."""
    return json.dumps(str(text), ensure_ascii=False)[1:-1]


def _label_table(
    labels: Mapping[str, Sequence[str]], window_ids: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    """The labels the grammar can write (each in a form its label rules allow) with the ids
    of the window that back each; labels with no backing item are left out."""
    table = {}
    for label, ids in labels.items():
        text = " ".join(str(label).split())
        words_ok = 0 < len(text) <= LABEL_CHARS and len(text.split()) <= LABEL_WORDS
        chars_ok = all(c.isalpha() or c in _LABEL_PUNCTUATION for c in text)
        backing = tuple(sorted({_escaped(i) for i in ids} & set(window_ids)))
        if words_ok and chars_ok and backing:
            table[_escaped(text)] = backing
    return table


def _from_evidence(grammar: AnswerGrammar) -> int:
    return grammar.longest_id + 1 + 2 * len(_CLOSE)  # the id, its quote, ]} of both lists


def _from_weight(grammar: AnswerGrammar) -> int:
    return 4 + len(_WEIGHT_TO_EVIDENCE) + _from_evidence(grammar)


def _from_label(grammar: AnswerGrammar) -> int:
    # A free label closes after one more character; a chosen one may need its longest.
    rest = grammar.longest_label + 1 if grammar.labels else 2
    return rest + len(_AFTER_LABEL) + _from_weight(grammar)


_CLOSING_CHARS: dict[int, Any] = {
    SUMMARY: lambda g: 2 + len(_AFTER_SUMMARY) + _from_label(g),
    LABEL: _from_label,
    WEIGHT: _from_weight,
    EVIDENCE: _from_evidence,
    AFTER_ID: lambda g: 2 * len(_CLOSE),
    AFTER_INTEREST: lambda g: len(_CLOSE),
    DONE: lambda g: 0,
}
