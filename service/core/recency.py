"""Recency: how much an event counts by how many events came after it. One formula, in two
forms: per event in Python floats (a window's weights, the recency-EASE baseline) and as one
array operation in the model's precision (the collaborative model's float32 histories)."""

from __future__ import annotations

import numpy as np


def recency_weight(age: int, half_life: float, floor: float = 0.0) -> float:
    """The weight of an event with ``age`` events after it: 1 for the newest, halving every
    ``half_life`` events, from 1 down towards ``floor`` (the weight no event falls below)."""
    return floor + (1.0 - floor) * 0.5 ** (age / half_life)


def recency_weights(
    count: int, half_life: float, floor: float = 0.0, dtype: type[np.floating] = np.float64
) -> np.ndarray:
    """``recency_weight`` of ``count`` events, oldest first, computed in ``dtype``."""
    age: np.ndarray = np.arange(count - 1, -1, -1, dtype=dtype)
    return floor + (1.0 - floor) * 0.5 ** (age / half_life)
