"""Choosing the collaborative model's settings for a catalog, on its own stored events.

What suits one catalog does not suit another (ml-latest-small wants a history half-life of 3
events, ml-100k one of 5 and no floor), so every index build with enough events chooses, by a
rule fixed before any evaluation was run:

- hold out each user's last 20% of events (users with at least ``MIN_EVENTS``), fit on the rest;
- in this order, keep the setting with the best mean NDCG@10 on the held-out events (every
  other setting at what the steps before chose, the rest at their defaults): EASE's λ (EASE
  alone), the history's half-life and floor (EASE alone), the next-items model's λ, and the
  share of the next-items model in the mix;
- with fewer than ``MIN_USERS`` held-out users, keep the defaults (too little to tell).

The offline evaluation calls the same function on its training part, so what it scores is what
a build ships (``scripts/eval/evaluate.py``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from service.retrieval.collaborative import CollaborativeConfig
from service.retrieval.collaborative_fit import (
    Histories,
    ease_weights,
    gram,
    mixed_weights,
    modelled_items,
    transition_weights,
)

HELD_OUT_SHARE = 0.2
MIN_EVENTS = 5
MIN_USERS = 50
# Held-out users scored per setting at most (a sample, fixed seed): enough to tell settings
# apart, and a bounded cost on a catalog with a million users.
MAX_USERS = 3_000
REGULARIZATIONS = (100.0, 300.0, 1_000.0, 3_000.0)
HALF_LIVES = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0)
FLOORS = (0.0, 0.1, 0.3)
TRANSITION_REGULARIZATIONS = (100.0, 300.0, 1_000.0)
TRANSITION_SHARES = (0.0, 0.3, 0.5, 0.7, 1.0)


@dataclass
class Tuned:
    config: CollaborativeConfig
    # Each step's settings and their mean NDCG@10 on the held-out events (empty: defaults kept).
    tried: dict[str, dict[str, float]] = field(default_factory=dict)
    held_out_users: int = 0


def tune(histories: Sequence[Sequence[str]], default: CollaborativeConfig | None = None) -> Tuned:
    """The settings for these users' time-ordered histories (item ids, oldest first)."""
    default = default or CollaborativeConfig()
    fit_part, held_out = _holdout(histories)
    if len(held_out) < MIN_USERS:
        return Tuned(default, held_out_users=len(held_out))
    item_ids = modelled_items(fit_part)
    prepared = Histories(fit_part, item_ids)
    judge = _Judge(prepared, held_out)
    tried: dict[str, dict[str, float]] = {}
    ease_only = replace(default, transition_share=0.0)
    consumed = gram(prepared)  # once: each fit takes a copy (ease_weights overwrites its input)

    config, ease = _choose_fit(
        {lam: replace(ease_only, regularization=lam) for lam in REGULARIZATIONS},
        lambda c: ease_weights(consumed.copy(), c.regularization),
        lambda c, fit: judge(c, ease=fit),
        tried,
        "regularization",
    )

    weighting = {(h, f): replace(config, half_life=h, floor=f) for h in HALF_LIVES for f in FLOORS}
    scored = {key: judge(c, ease=ease) for key, c in weighting.items()}
    config = weighting[_best(scored, tried, "half_life, floor")]

    mixed = replace(config, transition_share=default.transition_share or 0.5)
    config, transitions = _choose_fit(
        {lam: replace(mixed, transition_regularization=lam) for lam in TRANSITION_REGULARIZATIONS},
        lambda c: transition_weights(prepared, c),
        lambda c, fit: judge(c, ease=ease, transitions=fit),
        tried,
        "transition_regularization",
    )

    shares = {s: replace(config, transition_share=s) for s in TRANSITION_SHARES}
    by_share = {s: judge(c, ease=ease, transitions=transitions) for s, c in shares.items()}
    config = shares[_best(by_share, tried, "transition_share")]
    return Tuned(config, tried, len(held_out))


def _holdout(
    histories: Sequence[Sequence[str]],
) -> tuple[list[list[str]], list[tuple[int, set[str]]]]:
    """Every history with its last 20% cut off where it has ``MIN_EVENTS`` or more, and the
    held-out items (those not in the kept part) of a sample of those users, by position."""
    kept, held_out = [], []
    for position, history in enumerate(histories):
        cut = len(history) - max(1, round(len(history) * HELD_OUT_SHARE))
        if len(history) < MIN_EVENTS:
            kept.append(list(history))
            continue
        kept.append(list(history[:cut]))
        later = set(history[cut:]) - set(history[:cut])
        if later:
            held_out.append((position, later))
    if len(held_out) > MAX_USERS:
        held_out = random.Random(0).sample(held_out, MAX_USERS)
    return kept, held_out


class _Judge:
    """Mean NDCG@10 of a setting over the held-out users (binary relevance, training items
    never ranked)."""

    def __init__(self, prepared: Histories, held_out: list[tuple[int, set[str]]]) -> None:
        self.prepared = prepared
        self.users = [position for position, _ in held_out]
        column = {item_id: c for c, item_id in enumerate(prepared.item_ids)}
        self.relevant = [{column[i] for i in items if i in column} for _, items in held_out]
        self.held_out_counts = [len(items) for _, items in held_out]

    def __call__(self, config: CollaborativeConfig, **fits: np.ndarray) -> float:
        weights = mixed_weights(self.prepared, config, **fits)
        users = self.prepared.subset(self.users)
        scores = (users.weighted(config) @ weights).astype(np.float64)
        for row, seen in enumerate(users.rows):
            scores[row, seen] = -np.inf
        top = np.argsort(-scores, axis=1)[:, :10]
        discounts = 1.0 / np.log2(np.arange(2, 12))
        total = 0.0
        for row, relevant in enumerate(self.relevant):
            gain = sum(discounts[k] for k, item in enumerate(top[row]) if item in relevant)
            ideal = discounts[: min(10, self.held_out_counts[row])].sum()
            total += gain / ideal
        return total / len(self.relevant)


def _choose_fit(candidates: dict, fit, judge, tried, step):  # type: ignore[no-untyped-def]
    """The best of settings that each need a fit of their own, and its fit; only the best fit
    so far is held (each is a dense item × item matrix)."""
    found, best, best_fit = {}, None, None
    for setting, config in candidates.items():
        weights = fit(config)
        found[setting] = judge(config, weights)
        if best is None or found[setting] > found[best]:
            best, best_fit = setting, weights
        del weights
    return candidates[_best(found, tried, step)], best_fit


def _best(found: dict, tried: dict[str, dict[str, float]], step: str):  # type: ignore[no-untyped-def]
    """The setting with the best mean (the first on a tie), and the step written down."""
    tried[step] = {_name(setting): round(value, 4) for setting, value in found.items()}
    return max(found, key=found.__getitem__)


def _name(setting: object) -> str:
    if isinstance(setting, tuple):
        return ", ".join(f"{part:g}" for part in setting)
    return f"{setting:g}"
