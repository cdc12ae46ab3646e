"""Profiles made from windows: each window summarized, the summaries embedded in one batch,
and every profile stamped with what made it (its source key) and how (its provenance)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from service.core.hashing import content_hash
from service.core.records import Profile, Summary, Window, WindowSpec
from service.embedding.encoder import Embedder, normalize_rows
from service.profiling.windows import events_hash
from service.summarizers.base import Summarizer

# The profile embedding leans on the interests (what drift and retrieval care about) and keeps
# some of the summary sentence for nuance the labels miss.
INTEREST_SHARE = 0.7


class ProfileMaker:
    def __init__(
        self,
        summarizer: Summarizer,
        embedder: Embedder,
        window: WindowSpec,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.summarizer = summarizer
        self.embedder = embedder
        self.window = window  # recorded in each profile's provenance
        self.clock = clock
        # LLM answers rejected since start, by check (the /metrics counter).
        self._fallbacks: Counter[str] = Counter()
        self._fallbacks_lock = threading.Lock()

    def source_key(self, window: Window, makers: str | None = None) -> str:
        """What a profile was made from and by: its events, the summarizer (model, prompt) and
        the embedder. A stored profile whose key differs is regenerated."""
        return content_hash(events_hash(window) + (makers or self.makers()))

    def makers(self) -> str:
        return json.dumps(
            [self.summarizer.describe(), self.embedder.model_id, self.embedder.dimension],
            sort_keys=True,
        )

    def make(self, windows: Sequence[tuple[str, Window]]) -> list[Profile]:
        """Summarize and embed (user, window) pairs, all in shared batches."""
        if not windows:
            return []
        started = time.perf_counter()
        summaries = self.summarizer.summarize([window for _, window in windows])
        self._count_fallbacks(summaries)
        embeddings = self.embed(summaries)
        batch = {"windows": len(windows), "duration_ms": (time.perf_counter() - started) * 1000}
        now = self.clock()
        return [
            Profile(
                user_id=user_id,
                window=window.info,
                summary=summary.summary,
                interests=summary.interests,
                embedding=embedding,
                provenance=self._provenance(summary, window, batch),
                source_key=self.source_key(window),
                created_at=now,
            )
            for (user_id, window), summary, embedding in zip(windows, summaries, embeddings)
        ]

    def fallback_checks(self) -> dict[str, int]:
        """How many windows this process profiled from the fallback, by the check the LLM's
        answer failed."""
        with self._fallbacks_lock:
            return dict(self._fallbacks)

    def _count_fallbacks(self, summaries: Sequence[Summary]) -> None:
        checks = [s.provenance.get("fallback_check") for s in summaries]
        with self._fallbacks_lock:
            self._fallbacks.update(
                str(check or "other")
                for check, s in zip(checks, summaries)
                if s.provenance.get("fallback_reason")
            )

    def embed(self, summaries: Sequence[Summary]) -> np.ndarray:
        """One embedding per summary: its interests (by weight) mixed with its sentence."""
        texts: list[str] = []
        for summary in summaries:
            texts.append(summary.summary)
            texts.extend(interest.label for interest in summary.interests)
        vectors = self.embedder.encode(texts)
        rows, position = [], 0
        for summary in summaries:
            sentence = vectors[position]
            labels = vectors[position + 1 : position + 1 + len(summary.interests)]
            position += 1 + len(summary.interests)
            if len(labels) == 0:
                rows.append(sentence)
                continue
            weights = np.array([i.weight for i in summary.interests], dtype=np.float32)
            interests = normalize_rows(weights @ labels)
            rows.append(INTEREST_SHARE * interests + (1 - INTEREST_SHARE) * sentence)
        return normalize_rows(np.stack(rows))

    def _provenance(self, summary: Summary, window: Window, batch: dict[str, float]) -> dict:
        # ``duration_ms`` is the summarizer's time for this window (the extractive one times
        # each window; an LLM, this window's share of its generation batch); ``batch``, the
        # whole refresh batch this profile was made in, embedding included.
        per_window = batch["duration_ms"] / batch["windows"]
        return {
            **summary.provenance,
            "embedder": self.embedder.model_id,
            "window": str(self.window),
            "events_hash": events_hash(window),
            "duration_ms": summary.provenance.get("duration_ms", round(per_window, 2)),
            "batch": {
                "windows": int(batch["windows"]),
                "duration_ms": round(batch["duration_ms"], 2),
            },
        }
