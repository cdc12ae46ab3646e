"""Scoring drift detectors on streams with known changes: hits, false alarms, calibration,
the design choice, and bootstrap intervals over users.

A detection 0..``TOLERANCE`` windows at or after an unmatched change point is a hit (its delay
is the distance); every other detection is a false alarm. F1 pools hits, false alarms and
misses over the stable and change streams; false alarms per 100 windows count stable streams
only, without their first window (it has no reference and cannot alarm); shuffled streams are
scored on their own.

The protocol, fixed before any run (``fit``): on the design part, each detector's options are
tried, each calibrated on that part's stable streams to the most sensitive setting with at
most ``TARGET_FALSE_ALARMS`` per 100 windows; the option with the best F1 there is kept. On the
calibration part the kept option is calibrated again; the test part is scored once, at that.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from service.evaluation.drift_detectors import SIGNALS, Candidate, Option, StreamData
from service.evaluation.drift_streams import CHANGE_KINDS, PARTNERS

TOLERANCE = 3
TARGET_FALSE_ALARMS = 1.0
# One user's counts, summed over their streams (the bootstrap resamples users).
FIELDS = (
    "hits",
    "delay_sum",
    "false_alarms",
    "misses",
    "stable_false_alarms",
    "stable_windows",
    "shuffled_false_alarms",
    "shuffled_windows",
)
_AT = {name: n for n, name in enumerate(FIELDS)}


def match(flagged: Sequence[int], changes: Sequence[int]) -> tuple[list[int], int, int]:
    """(delays of the hits, false alarms, missed changes) for one stream."""
    open_changes = sorted(changes)
    delays, false_alarms = [], 0
    for window in sorted(flagged):
        candidates = [c for c in open_changes if c <= window <= c + TOLERANCE]
        if candidates:
            change = candidates[-1]  # the nearest change before the detection
            open_changes.remove(change)
            delays.append(window - change)
        else:
            false_alarms += 1
    return delays, false_alarms, len(open_changes)


def counts(flagged: Sequence[int], data: StreamData) -> np.ndarray:
    """One stream's contribution to its user's ``FIELDS``."""
    row = np.zeros(len(FIELDS))
    delays, false_alarms, misses = match(flagged, data.stream.changes)
    if data.stream.kind == "shuffled":
        row[_AT["shuffled_false_alarms"]] = false_alarms
        row[_AT["shuffled_windows"]] = data.windows - 1
        return row
    row[_AT["hits"]], row[_AT["delay_sum"]] = len(delays), sum(delays)
    row[_AT["false_alarms"]], row[_AT["misses"]] = false_alarms, misses
    if data.stream.kind == "stable":
        row[_AT["stable_false_alarms"]] = false_alarms
        row[_AT["stable_windows"]] = data.windows - 1
    return row


@dataclass(frozen=True)
class Score:
    f1: float
    mean_delay: float | None
    miss_rate: float
    false_alarms_per_100: float  # stable streams
    shuffled_false_alarms_per_100: float
    hits: int
    false_alarms: int
    misses: int

    @classmethod
    def of(cls, total: np.ndarray) -> Score:
        hits, delay_sum, false_alarms, misses = (total[_AT[k]] for k in FIELDS[:4])
        return cls(
            f1=round(f1_of(hits, false_alarms, misses), 4),
            mean_delay=round(delay_sum / hits, 3) if hits else None,
            miss_rate=round(misses / (hits + misses), 4) if hits + misses else 0.0,
            false_alarms_per_100=round(_per_100(total, "stable"), 3),
            shuffled_false_alarms_per_100=round(_per_100(total, "shuffled"), 3),
            hits=int(hits),
            false_alarms=int(false_alarms),
            misses=int(misses),
        )


def f1_of(hits: float, false_alarms: float, misses: float) -> float:
    return 2 * hits / (2 * hits + false_alarms + misses) if hits + false_alarms + misses else 0.0


def _per_100(total: np.ndarray, kind: str) -> float:
    return 100 * total[_AT[f"{kind}_false_alarms"]] / max(1.0, total[_AT[f"{kind}_windows"]])


# --- scales, calibration, design ---------------------------------------------------------------


def scales(design: Sequence[StreamData], references: Sequence[str]) -> dict[tuple[str, str], float]:
    """Each (signal, reference)'s median statistic on the design part's stable windows: the
    unit the scaled detectors' settings are in."""
    stable = [d for d in design if d.stream.kind == "stable"]
    found = {}
    for signal in SIGNALS:
        for reference in references:
            values = [v for d in stable for v in d.statistics(signal, reference)[1:]]
            found[(signal, reference)] = max(float(np.median(values)), 1e-9) if values else 1.0
    return found


@dataclass(frozen=True)
class Fitted:
    """A candidate with its design option (from the design part) and its setting (from the
    calibration part)."""

    candidate: Candidate
    option: Option
    setting: float
    scale: float
    design_f1: dict[str, float]  # every option's F1 on the design part, at its own calibration

    def flags(self, data: StreamData) -> list[int]:
        return self.candidate.flags(data, self.option, self.setting, self.scale)


def calibrate(
    candidate: Candidate, option: Option, scale: float, streams: Sequence[StreamData]
) -> float:
    """The most sensitive setting whose false alarms on the stable streams stay within the
    target rate (the settings run from least to most sensitive)."""
    stable = [d for d in streams if d.stream.kind == "stable"]
    chosen = candidate.settings[0]
    for setting in candidate.settings:
        total = _total(counts(candidate.flags(d, option, setting, scale), d) for d in stable)
        if _per_100(total, "stable") > TARGET_FALSE_ALARMS:
            break
        chosen = setting
    return chosen


def score(fitted: Fitted, streams: Sequence[StreamData]) -> Score:
    return Score.of(_total(counts(fitted.flags(d), d) for d in streams))


def _total(rows: Iterable[np.ndarray]) -> np.ndarray:
    return np.sum([np.zeros(len(FIELDS)), *rows], axis=0)


def fit(
    candidate: Candidate,
    scale_of: dict[tuple[str, str], float],
    design: Sequence[StreamData],
    calibration: Sequence[StreamData],
) -> Fitted:
    """The option with the best F1 on the design part (each calibrated there; a tie goes to
    the first), then its setting calibrated on the calibration part."""
    tried: dict[str, float] = {}
    best: tuple[float, Option] | None = None
    for option in candidate.options:
        scale = scale_of.get((candidate.signal, option.reference), 1.0)
        setting = calibrate(candidate, option, scale, design)
        f1 = score(Fitted(candidate, option, setting, scale, {}), design).f1
        tried[str(option)] = f1
        if best is None or f1 > best[0]:
            best = (f1, option)
    assert best is not None
    option = best[1]
    scale = scale_of.get((candidate.signal, option.reference), 1.0)
    setting = calibrate(candidate, option, scale, calibration)
    return Fitted(candidate, option, setting, scale, tried)


# --- the test part: per user, per kind, bootstrap ---------------------------------------------


def per_user(fitted: Fitted, streams: Sequence[StreamData], users: Sequence[str]) -> np.ndarray:
    """users x FIELDS: each user's counts over their streams."""
    row_of = {user: n for n, user in enumerate(users)}
    table = np.zeros((len(users), len(FIELDS)))
    for data in streams:
        table[row_of[data.stream.user]] += counts(fitted.flags(data), data)
    return table


def by_kind(fitted: Fitted, streams: Sequence[StreamData]) -> dict[str, dict]:
    """Recall, delay and false alarms on each change kind's streams, and on each way the
    partner was drawn."""
    groups: dict[str, list[StreamData]] = {}
    for data in streams:
        if data.stream.changes:
            groups.setdefault(data.stream.kind, []).append(data)
            groups.setdefault(f"partner: {data.stream.partner}", []).append(data)
    order = [*CHANGE_KINDS, *(f"partner: {p}" for p in PARTNERS)]
    result = {}
    for group in order:
        if group in groups:
            s = score(fitted, groups[group])
            recall = s.hits / (s.hits + s.misses) if s.hits + s.misses else 0.0
            result[group] = {
                "recall": round(recall, 4),
                "mean_delay": s.mean_delay,
                "false_alarms": s.false_alarms,
                "changes": s.hits + s.misses,
            }
    return result


def bootstrap(
    tables: dict[str, np.ndarray], reference: str, resamples: int = 2000, seed: int = 0
) -> dict[str, dict]:
    """95% percentile intervals over users (resampled with replacement) for F1, mean delay and
    false alarms / 100 stable windows, and for ``reference``'s F1 minus this one's on the same
    resample (paired: one user's streams are scored by every detector)."""
    users = next(iter(tables.values())).shape[0]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(users, np.full(users, 1.0 / users), size=resamples)
    f1 = {name: _f1s(weights @ table) for name, table in tables.items()}
    result = {}
    for name, table in tables.items():
        totals = weights @ table
        hits = totals[:, _AT["hits"]]
        delays = np.divide(
            totals[:, _AT["delay_sum"]], hits, where=hits > 0, out=np.full(resamples, np.nan)
        )
        windows = np.maximum(1.0, totals[:, _AT["stable_windows"]])
        alarms = 100 * totals[:, _AT["stable_false_alarms"]] / windows
        result[name] = {
            "f1": _interval(f1[name]),
            "mean_delay": _interval(delays[~np.isnan(delays)]),
            "false_alarms_per_100": _interval(alarms),
            "reference_f1_minus_this": _interval(f1[reference] - f1[name]),
        }
    return result


def _f1s(totals: np.ndarray) -> np.ndarray:
    hits, false_alarms, misses = (totals[:, _AT[k]] for k in ("hits", "false_alarms", "misses"))
    denominator = 2 * hits + false_alarms + misses
    return np.divide(2 * hits, denominator, where=denominator > 0, out=np.zeros(len(hits)))


def _interval(values: np.ndarray) -> list[float] | None:
    if len(values) == 0:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]
