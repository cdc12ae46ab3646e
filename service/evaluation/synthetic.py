"""Synthetic catalogs and event logs for scale work (benchmarks, load tests), never for quality.

Items are written in real English words (the bundled embedder's own vocabulary), grouped into
topics so the embeddings cluster the way a real catalog's do: a uniform random catalog would make
every IVF list equally likely and understate what an inverted index gains. Lengths follow what
product and media catalogs look like: titles of 2-10 words, descriptions of 15-150 words
(log-normal, median about 45), one to three categories. Everything is a pure function of the seed,
and items stream in chunks, so a million of them never sit in memory at once.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from service.core.records import Event, Item

TOPICS = 400
WORDS_PER_TOPIC = 60
CATEGORIES = 48
CHUNK = 4_096
_WORD = re.compile(r"^[a-z]{3,12}$")


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """Whole English words from the bundled MiniLM tokenizer's vocabulary (about 20,000)."""
    from service.embedding.encoder import bundled_model_path

    lines = (Path(bundled_model_path()) / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return tuple(word for word in lines if _WORD.match(word))


class _Topics:
    """Each topic draws most of its words from its own small vocabulary, the rest from all."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.words = vocabulary()
        self.topic_words = [
            [rng.choice(self.words) for _ in range(WORDS_PER_TOPIC)] for _ in range(TOPICS)
        ]
        self.categories = [
            f"{rng.choice(self.words)} {rng.choice(self.words)}".title() for _ in range(CATEGORIES)
        ]
        self.topic_categories = [rng.sample(self.categories, 3) for _ in range(TOPICS)]

    def phrase(self, rng: random.Random, topic: int, length: int) -> str:
        own = self.topic_words[topic]
        return " ".join(
            rng.choice(own) if rng.random() < 0.7 else rng.choice(self.words) for _ in range(length)
        )


def _item_rng(number: int, seed: int) -> random.Random:
    return random.Random(seed * 1_000_000_007 + number)


def item_topic(item_number: int, seed: int = 0) -> int:
    """The topic of the n-th synthetic item (the event generator needs it)."""
    return _item_rng(item_number, seed).randrange(TOPICS)


def synthetic_items(
    count: int, seed: int = 0, chunk: int = CHUNK, first: int = 0
) -> Iterator[list[Item]]:
    """``count`` items in chunks, ids ``s{first}`` .. ``s{first+count-1}``; item n is the same
    whatever the count and the chunk size. Items past a catalog's end (``first`` = its size)
    are held-out items of the same catalog: drawn alike, not in it."""
    topics = _Topics(seed)
    for start in range(first, first + count, chunk):
        numbers = range(start, min(first + count, start + chunk))
        yield [_item(topics, number, seed) for number in numbers]


def _item(topics: _Topics, number: int, seed: int) -> Item:
    rng = _item_rng(number, seed)
    topic = rng.randrange(TOPICS)  # the same first draw as item_topic
    title_words = int(min(10, max(2, rng.lognormvariate(math.log(4), 0.4))))
    text_words = int(min(150, max(15, rng.lognormvariate(math.log(45), 0.6))))
    categories = tuple(topics.topic_categories[topic][: rng.randint(1, 3)])
    return Item(
        item_id=f"s{number}",
        title=topics.phrase(rng, topic, title_words).capitalize(),
        text=topics.phrase(rng, topic, text_words).capitalize() + ".",
        categories=categories,
    )


def synthetic_events(
    users: int, items: int, per_user: int = 60, seed: int = 0, start_ts: float = 1.7e9
) -> Iterator[Event]:
    """``per_user`` events for each of ``users`` users over the first ``items`` synthetic items.

    A user has two or three favourite topics and picks mostly within them; within the catalog,
    popularity is Zipf-like (a few items are chosen by many users), as in real logs."""
    rng = np.random.default_rng([seed, 1])
    by_topic: list[list[int]] = [[] for _ in range(TOPICS)]
    for number in range(items):
        by_topic[item_topic(number, seed)].append(number)
    popular = np.minimum(rng.zipf(1.3, size=users * per_user) - 1, items - 1)
    for user in range(users):
        favourites = rng.choice(TOPICS, size=int(rng.integers(2, 4)), replace=False)
        for k in range(per_user):
            if rng.random() < 0.2:
                number = int(popular[user * per_user + k])
            else:
                pool = by_topic[int(rng.choice(favourites))] or [int(rng.integers(0, items))]
                number = pool[int(rng.integers(0, len(pool)))]
            yield Event(
                event_id=f"e{user}-{k}",
                user_id=f"u{user}",
                item_id=f"s{number}",
                type="view",
                ts=start_ts + user * 7 + k * 3_600,
                value=None,
            )
