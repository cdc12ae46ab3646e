"""Is a label about the window? The garbage detector of the answer validation.

Constrained decoding makes any model's answer valid JSON citing the window's items, so the
form proves nothing: a random model writes well-formed noise. A label is *supported* when the
window's items back it: most of its content words are words of their titles, categories or
texts (compared by stem, so "Rockets" matches "rocket"), or, with an encoder, the label is close
in embedding space to one of the items ("Science fiction" to a movie of the genre "Sci-Fi").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from service.core.records import Item, Window
from service.summarizers.words import NEUTRAL_WORDS

# Items of the window read for support (a window is cut to ~20-40 events anyway).
MAX_ITEM_CHARS = 400
# Share of a label's content words that must be words of the window's items.
MIN_WORD_SUPPORT = 0.5
# Cosine (normalized vectors) between a label and an item's text above which the item supports
# the label. MiniLM: "science fiction" to a "Sci-Fi" movie ~0.4, random word salad < 0.25.
MIN_SIMILARITY = 0.4
# Common abbreviations in catalogs (MovieLens genres): the words they stand for.
_EXPANSIONS = {"sci": ("science",), "fi": ("fiction",), "scifi": ("science", "fiction")}
_WORD = re.compile(r"[^\W_]+")
LETTERS = re.compile(r"[^\W\d_]+")  # runs of letters: a text's words as written

Encode = Callable[[Sequence[str]], Any]  # texts -> rows of unit vectors (numpy)


def stem(word: str) -> str:
    """A crude English stem: enough that plurals and -ing forms meet ("rockets", "cooking")."""
    word = word.lower()
    for suffix in ("ies", "ing", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    words = []
    for word in _WORD.findall(text.lower()):
        for part in _EXPANSIONS.get(word, (word,)):
            if part not in NEUTRAL_WORDS and not part.isdigit() and len(part) > 1:
                words.append(stem(part))
    return words


def window_labels(window: Window) -> dict[str, list[str]]:
    """The window's own topics, each with the items that carry it: its items' categories (the
    catalog's words for what an item is about), which constrained decoding offers as labels."""
    labels: dict[str, list[str]] = {}
    for item in (we.item for we in window.events):
        if item is None:
            continue
        for category in item.categories:
            backing = labels.setdefault(" ".join(category.split()), [])
            if item.item_id not in backing:
                backing.append(item.item_id)
    return labels


def item_words(item: Item) -> set[str]:
    return set(content_words(_item_text(item)))


def _item_text(item: Item) -> str:
    return " ".join([item.title, *item.categories, item.text[:MAX_ITEM_CHARS]])


@dataclass(frozen=True)
class LabelCheck:
    supported: bool
    items: tuple[str, ...]  # the window's items that back the label, best first


class WindowSupport:
    """The words (and, with ``encode``, the vectors) of one window's items."""

    def __init__(self, window: Window, encode: Encode | None = None) -> None:
        items = {we.item.item_id: we.item for we in window.events if we.item is not None}
        self.item_ids = list(items)
        self.words = {item_id: item_words(item) for item_id, item in items.items()}
        self.vocabulary = set().union(*self.words.values()) if self.words else set()
        self.titles = {" ".join(content_words(item.title)) for item in items.values()}
        self._title_words = [content_words(item.title) for item in items.values()]
        self.categories = {" ".join(content_words(c)) for i in items.values() for c in i.categories}
        # Every word of the items as written (lower case): a summary may use an item's own word
        # whether or not it is an English one ("Amélie", "IMAX").
        self.letter_words = {
            w.lower() for item in items.values() for w in LETTERS.findall(_item_text(item))
        }
        self._encode = encode
        self._texts = [items[i].embedding_text()[:MAX_ITEM_CHARS] for i in self.item_ids]
        self._vectors: Any = None

    def check(self, label: str) -> LabelCheck:
        words = content_words(label)
        if not words:
            return LabelCheck(False, ())
        known = [w for w in words if w in self.vocabulary]
        by_words = sorted(
            (i for i in self.item_ids if self.words[i] & set(known)),
            key=lambda i: -len(self.words[i] & set(known)),
        )
        if len(known) / len(words) >= MIN_WORD_SUPPORT:
            return LabelCheck(True, tuple(by_words))
        close = self._close_items(label)
        return LabelCheck(bool(close), tuple(close))

    def is_title(self, label: str) -> bool:
        """The label is an item's title (a title names one item, not an interest), and not also
        one of their categories."""
        words = " ".join(content_words(label))
        return words in self.titles and words not in self.categories

    def is_title_fragment(self, label: str) -> bool:
        """The label is a run of two or more consecutive words of one item's title ("The James
        Webb Telescope" of "The James Webb Telescope: Myths and Facts"): it names an item, not
        an interest. A category is never one."""
        words = content_words(label)
        if len(words) < 2 or " ".join(words) in self.categories:
            return False
        size = len(words)
        return any(
            title[start : start + size] == words
            for title in self._title_words
            for start in range(len(title) - size + 1)
        )

    def _close_items(self, label: str) -> list[str]:
        if self._encode is None or not self.item_ids:
            return []
        if self._vectors is None:
            self._vectors = self._encode(self._texts)
        similarity = self._vectors @ self._encode([label])[0]
        order = sorted(range(len(self.item_ids)), key=lambda i: -float(similarity[i]))
        return [self.item_ids[i] for i in order if similarity[i] >= MIN_SIMILARITY]
