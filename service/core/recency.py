"""Recency: how much an event counts by how many events came after it."""

from __future__ import annotations

import numpy as np


def recency_weights(
    count: int, half_life: float, floor: float = 0.0, dtype: type[np.floating] = np.float64
) -> np.ndarray:
    """Weights of ``count`` events, oldest first: the newest weighs 1, and the weight halves
    every ``half_life`` events, from 1 down towards ``floor`` (the weight no event falls
    below)."""
    age: np.ndarray = np.arange(count - 1, -1, -1, dtype=dtype)
    return floor + (1.0 - floor) * 0.5 ** (age / half_life)
