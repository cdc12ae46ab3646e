"""Popularity: every item by its number of distinct users, counted from the store and kept
current behind the requests."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from service.retrieval.index.search import ItemIndex
from service.store import Store

POPULAR_ITEMS = 10_000  # popularity beyond the top 10,000 says nothing useful


@dataclass(frozen=True)
class Ranking:
    version: tuple[int, int] | None  # Store.events.version() it was counted at
    ranked: list[str]


class Popularity:
    """The most popular items. Counting them reads every event, so once there is a ranking, a
    change of the events recounts in the background and requests serve the previous ranking
    meanwhile (popularity a few seconds old ranks the same)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ranking = Ranking(None, [])
        self._lock = threading.Lock()
        self._refresh: threading.Thread | None = None
        self._in_index: tuple[object, np.ndarray] = (None, np.zeros(0, dtype=np.int64))

    def rows(self, index: ItemIndex) -> np.ndarray:
        """The popular items as rows of ``index`` (-1 for one it does not have), translated
        once per ranking and index build."""
        ranking = self.snapshot()
        key = (ranking.version, index.manifest.build_id)
        cached = self._in_index
        if cached[0] != key:
            cached = self._in_index = (key, index.rows_of(ranking.ranked, missing=-1))
        return cached[1]

    def snapshot(self) -> Ranking:
        version = self.store.events.version()
        with self._lock:
            current = self._ranking
            if current.version is None:
                current = self._ranking = self._count(version)
            elif current.version != version and not self._refresh:
                self._refresh = threading.Thread(
                    target=self._recount, args=(version,), name="popularity", daemon=True
                )
                self._refresh.start()
            return current

    def _recount(self, version: tuple[int, int]) -> None:
        fresh = None
        try:
            fresh = self._count(version)
        finally:  # a failed recount is tried again by the next request
            with self._lock:
                if fresh is not None:
                    self._ranking = fresh
                self._refresh = None

    def _count(self, version: tuple[int, int]) -> Ranking:
        return Ranking(version, [item for item, _ in self.store.events.popularity(POPULAR_ITEMS)])
