"""The drift evaluation's detectors, each on every signal it can use, with one post-processing.

Signals, one sample per window of a stream:

- ``interests``: the service's profile as interest counts (``drift.interest_counts``);
- ``genres``: the window's item genres as counts (an event counts 1, split over its genres),
  straight from the catalog, no profile;
- ``item_embedding``: the mean embedding of the window's items;
- ``profile_embedding``: the profile's embedding.

A window's statistic against its reference (the windows before it): Pearson's chi-square of
the two samples for counts, the cosine distance to the reference's mean for vectors, divided by
its median on the design part's stable windows so that one grid of settings fits every signal.
Every detector has the same reference options (``REFERENCES``: the previous window; the three
before; the three before or the two before, whichever is further, the service's "straddle"
rule; or the three before, confirmed by the next window) and the same debouncing (consecutive
flagged windows are one change, flagged at the first).

Detectors: a fixed ``threshold`` on the statistic (on item embeddings, Evidently's
embedding-distance test), ``page_hinkley`` and ``cusum`` on its sequence (evidence pooled
across windows), ``adwin`` on the events themselves (each event's distance to the reference
windows' events: 10 windows are too few points for ADWIN ever to cut, hundreds of events are
not), ``periodic`` (fires every *n* windows: the floor), and ``service``: the service's own
``drift_history`` on its own profiles, its straddle and disjoint-window rules included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from service.core.config import DriftSettings
from service.core.records import Profile
from service.embedding.encoder import normalize_rows
from service.evaluation.drift_streams import Stream
from service.profiling.drift import chi_square, drift_history, interest_counts, pooled_counts

COUNT_SIGNALS = ("interests", "genres")
VECTOR_SIGNALS = ("item_embedding", "profile_embedding")
SIGNALS = COUNT_SIGNALS + VECTOR_SIGNALS


class Reference(NamedTuple):
    windows: int  # how many windows before are the reference
    straddle: bool  # also against the reference less its newest window, whichever is further
    confirmed: bool  # the window and the one before, each against the reference before both


REFERENCES = {
    "1": Reference(1, False, False),
    "3": Reference(3, False, False),
    "3 or 2": Reference(3, True, False),
    "3, confirmed": Reference(3, False, True),
}


NO_GENRE = "(none)"


@dataclass(frozen=True)
class Catalog:
    """What the signals need of the items: genres and embeddings, by item id."""

    genres: dict[str, tuple[str, ...]]
    vectors: dict[str, np.ndarray]
    genre_columns: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        names = sorted({g for genres in self.genres.values() for g in genres} | {NO_GENRE})
        object.__setattr__(self, "genre_columns", {g: n for n, g in enumerate(names)})

    def genres_of(self, item: str) -> tuple[str, ...]:
        return self.genres.get(item) or (NO_GENRE,)

    def event_vector(self, item: str, signal: str) -> np.ndarray:
        """An event as a vector: its item's embedding, or its genres one-hot."""
        if signal == "item_embedding":
            return self.vectors[item]
        row = np.zeros(len(self.genre_columns), dtype=np.float32)
        for genre in self.genres_of(item):
            row[self.genre_columns[genre]] = 1.0
        return row


@dataclass
class StreamData:
    """One stream as the detectors see it, statistics cached per (signal, reference)."""

    stream: Stream
    profiles: list[Profile]  # the service's profile of each window, oldest first
    window_items: list[list[str]]  # each window's item ids, in event order
    catalog: Catalog
    _statistics: dict[tuple[str, str], list[float]] = field(default_factory=dict, repr=False)

    @property
    def windows(self) -> int:
        return len(self.window_items)

    def samples(self, signal: str) -> list[Any]:
        if signal == "interests":
            return [interest_counts(p) for p in self.profiles]
        if signal == "genres":
            return [self._genre_counts(items) for items in self.window_items]
        if signal == "item_embedding":
            return [self._mean_vector(items) for items in self.window_items]
        return [p.embedding for p in self.profiles]

    def statistics(self, signal: str, reference: str) -> list[float]:
        """Each window's raw statistic against its reference (the first window: 0, never
        flagged)."""
        key = (signal, reference)
        if key not in self._statistics:
            self._statistics[key] = window_statistics(self.samples(signal), signal, reference)
        return self._statistics[key]

    def event_distances(self, signal: str, windows: int) -> list[float]:
        """From the second window on, each event's cosine distance to the mean of the events
        of the ``windows`` windows before its own (item genres one-hot, or item embeddings):
        the same reference as the window statistics, one value per event."""
        key = (f"events:{signal}", str(windows))
        if key not in self._statistics:
            rows = [
                np.stack([self.catalog.event_vector(item, signal) for item in window])
                for window in self.window_items
            ]
            distances = []
            for position in range(1, len(rows)):
                before = np.concatenate(rows[max(0, position - windows) : position])
                anchor = normalize_rows(before.mean(axis=0))
                distances += [float(d) for d in 1.0 - normalize_rows(rows[position]) @ anchor]
            self._statistics[key] = distances
        return self._statistics[key]

    def _genre_counts(self, items: Sequence[str]) -> dict[str, float]:
        counts: dict[str, float] = {}
        for item in items:
            genres = self.catalog.genres_of(item)
            for genre in genres:
                counts[genre] = counts.get(genre, 0.0) + 1.0 / len(genres)
        return counts

    def _mean_vector(self, items: Sequence[str]) -> np.ndarray:
        return normalize_rows(np.mean([self.catalog.vectors[i] for i in items], axis=0))


def window_statistics(samples: Sequence[Any], signal: str, reference: str) -> list[float]:
    """Each window's statistic against its reference; 0 where there is none yet. Confirmed:
    the smaller of this window's and the previous one's, both against the windows before the
    previous one, so that a one-window burst of the user's own (which the next window
    reverses) does not alarm and a change that persists alarms one window late."""
    length, straddle, confirmed = REFERENCES[reference]
    result = [0.0] * (2 if confirmed else 1)
    for position in range(len(result), len(samples)):
        end = position - 1 if confirmed else position
        before = list(samples[max(0, end - length) : end])
        candidates = [before, before[:-1]] if straddle and len(before) > 1 else [before]
        tested = samples[end : position + 1]
        result.append(min(max(_statistic(now, c, signal) for c in candidates) for now in tested))
    return result


def _statistic(now: Any, before: Sequence[Any], signal: str) -> float:
    if signal in COUNT_SIGNALS:
        return chi_square(now, pooled_counts(before))
    mean = normalize_rows(np.mean(np.stack(before), axis=0))
    return float(1.0 - normalize_rows(now) @ mean)


# --- detectors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One design choice of a detector: the reference, and its own knob (or None)."""

    reference: str
    knob: float | None = None

    def __str__(self) -> str:
        return self.reference if self.knob is None else f"{self.reference}, {self.knob:g}"


Flagger = Callable[[StreamData, str, Option, float, float], list[int]]


@dataclass(frozen=True)
class Candidate:
    """A detector on a signal, its design options and its settings (least to most
    sensitive)."""

    detector: str
    signal: str
    options: tuple[Option, ...]
    settings: tuple[float, ...]
    flagger: Flagger

    @property
    def name(self) -> str:
        return f"{self.detector} × {self.signal}"

    def flags(self, data: StreamData, option: Option, setting: float, scale: float) -> list[int]:
        """The windows flagged on one stream; ``scale`` divides the statistic."""
        return self.flagger(data, self.signal, option, setting, scale)


def debounced(above: Sequence[bool]) -> list[int]:
    """The first window of each run of flagged windows (window 0 never flags)."""
    return [i for i in range(1, len(above)) if above[i] and not above[i - 1]]


def threshold_flags(
    data: StreamData, signal: str, option: Option, setting: float, scale: float
) -> list[int]:
    x = data.statistics(signal, option.reference)
    return debounced([i > 0 and value / scale > setting for i, value in enumerate(x)])


def cusum_flags(
    data: StreamData, signal: str, option: Option, setting: float, scale: float
) -> list[int]:
    """One-sided CUSUM of the scaled statistic less ``knob`` (the drift it tolerates), reset
    after each alarm: a change that raises the statistic a little for several windows adds up."""
    x = data.statistics(signal, option.reference)
    total, above = 0.0, [False]
    for value in x[1:]:
        total = max(0.0, total + value / scale - float(option.knob or 0.0))
        above.append(total > setting)
        if total > setting:
            total = 0.0
    return debounced(above)  # an alarm right after an alarm is the same change


def page_hinkley_flags(
    data: StreamData, signal: str, option: Option, setting: float, scale: float
) -> list[int]:
    from river import drift

    detector = drift.PageHinkley(
        min_instances=1, delta=float(option.knob or 0.0), threshold=setting, mode="up"
    )
    x = data.statistics(signal, option.reference)
    above = [False]
    for value in x[1:]:
        detector.update(value / scale)
        above.append(bool(detector.drift_detected))
    return debounced(above)  # an alarm right after an alarm is the same change


def adwin_flags(
    data: StreamData, signal: str, option: Option, setting: float, scale: float
) -> list[int]:
    """ADWIN (river) on each event's cosine distance to the mean of the events of the reference
    windows before it; an alarm at an event flags its window."""
    from river import drift

    values = data.event_distances(signal, REFERENCES[option.reference].windows)
    size = len(data.window_items[0])
    detector = drift.ADWIN(delta=setting, clock=1, grace_period=int(option.knob or 5))
    above = [False] * data.windows
    for position, value in enumerate(values, start=size):
        detector.update(value)
        if detector.drift_detected:
            above[position // size] = True
    return debounced(above)


def periodic_flags(
    data: StreamData, signal: str, option: Option, setting: float, scale: float
) -> list[int]:
    """Fires every ``setting`` windows counted over all streams (phase spread over streams)."""
    offset = sum(map(ord, data.stream.stream_id))
    return [i for i in range(1, data.windows) if (offset + i) % max(1, int(setting)) == 0]


def service_flags(drift: DriftSettings) -> Flagger:
    """The service's own drift code on its profiles: the interest test at threshold
    ``setting`` with the option's reference length (its straddle and disjoint rules built in)."""

    def flag(
        data: StreamData, signal: str, option: Option, setting: float, scale: float
    ) -> list[int]:
        tuned = replace(
            drift,
            signal="interests",
            interest_threshold=setting,
            reference_windows=REFERENCES[option.reference].windows,
        )
        return [i for i, point in enumerate(drift_history(data.profiles, tuned)) if point.detected]

    return flag


# --- the candidates --------------------------------------------------------------------------

SCALED_SETTINGS = tuple(float(x) for x in np.geomspace(40.0, 0.8, 120))
SEQUENTIAL_SETTINGS = tuple(float(x) for x in np.geomspace(60.0, 0.3, 120))
ADWIN_DELTAS = (1e-8, 1e-6, 1e-5, 1e-4, 1e-3, 0.002, 0.01, 0.05, 0.1, 0.3, 0.6, 0.9, 0.99)
PERIODS = (1000.0, 500.0, 200.0, 100.0, 50.0, 20.0, 10.0, 5.0, 3.0, 2.0)
SERVICE_THRESHOLDS = tuple(float(x) for x in np.geomspace(150.0, 2.0, 160))


def _options(knobs: Sequence[float | None], references: Sequence[str] = tuple(REFERENCES)):
    return tuple(Option(reference, knob) for reference in references for knob in knobs)


def candidates(drift: DriftSettings) -> list[Candidate]:
    """Every detector on every signal it can use, with the same reference options: the service
    first, the floor last."""
    found = [
        Candidate(
            "service",
            "interests",
            _options([None], ["1", "3 or 2"]),
            SERVICE_THRESHOLDS,
            service_flags(drift),
        )
    ]
    for signal in SIGNALS:
        found += [
            Candidate("threshold", signal, _options([None]), SCALED_SETTINGS, threshold_flags),
            Candidate("cusum", signal, _options([1.0, 2.0]), SEQUENTIAL_SETTINGS, cusum_flags),
            Candidate(
                "page_hinkley",
                signal,
                _options([0.5, 1.0]),
                SEQUENTIAL_SETTINGS,
                page_hinkley_flags,
            ),
        ]
    for signal in ("genres", "item_embedding"):  # the signals with one value per event
        found.append(
            Candidate("adwin", signal, _options([5, 20], ["1", "3"]), ADWIN_DELTAS, adwin_flags)
        )
    found.append(Candidate("periodic", "none", (Option("1"),), PERIODS, periodic_flags))
    return found
