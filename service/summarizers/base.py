"""What every summarizer is: windows in, one summary per window out, and a description of what
made them (for provenance and readiness)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from service.core.records import Interest, Summary, Window

MAX_INTERESTS = 5
# Why a fallback is worth redoing (provenance "transient"): see Profiler._retry_due.
MODEL_DOWN, GENERATION_FAILED = "model not loaded", "generation failed"


class Summarizer(Protocol):
    name: str
    # Why the summarizer cannot do its job right now (an LLM that did not load), or None:
    # readiness reports it, and profiles that fell back for it are made again once it is None.
    problem: str | None

    def summarize(self, windows: Sequence[Window]) -> list[Summary]:
        """One summary per window, in order."""
        ...

    def describe(self) -> dict[str, Any]:
        """What made the summaries: summarizer, model, quantization (for provenance/readiness)."""
        ...


def normalize_weights(raw: Sequence[tuple[str, float, tuple[str, ...]]]) -> tuple[Interest, ...]:
    total = sum(weight for _, weight, _ in raw)
    if not 0 < total < math.inf:  # all zero: the order is all the model told us
        return tuple(Interest(label, round(1 / len(raw), 4), ev) for label, _, ev in raw)
    return tuple(Interest(label, round(weight / total, 4), ev) for label, weight, ev in raw)
