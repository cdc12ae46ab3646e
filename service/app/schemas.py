"""Wire types of the REST API (and the CLI's JSON output), and conversions from domain records.

The input records (items, events) are validated in ``service.ingest.validation``, shared with
the file loaders.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from service.core.records import DriftReport, Profile, ThresholdBasis, WindowDrift, WindowInfo
from service.retrieval.recommender import Recommendation
from service.store import Store


class UpsertedOut(BaseModel):
    upserted: int


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    unknown_items: int


class WindowOut(BaseModel):
    index: int
    start: str
    end: str
    events: int
    closed: bool


class InterestOut(BaseModel):
    label: str
    weight: float
    evidence: list[str]


class WindowDriftOut(BaseModel):
    """This window against the windows it was compared with (``reference``: their indices;
    null score for a user's first window). ``threshold_basis``: ``fixed`` (the configured
    threshold), ``capped`` (lower: 0.9 of the events of both samples, the most the statistic
    reaches when no interest is shared), ``per-user`` (the embedding signal's)."""

    score: float | None
    threshold: float
    threshold_basis: ThresholdBasis
    detected: bool
    reference: list[int]
    gained: list[str]
    lost: list[str]


class ProfileOut(BaseModel):
    user_id: str
    window: WindowOut
    summary: str
    interests: list[InterestOut]
    provenance: dict[str, Any]
    drift: WindowDriftOut | None
    created_at: str


class HistoryOut(BaseModel):
    user_id: str
    profiles: list[ProfileOut]


class DriftOut(BaseModel):
    """Whether the user is drifting, and the verdict it rests on: ``score`` and ``threshold``
    are those of ``scored_window`` against ``reference_window`` (the detection's window when
    drifting, the newest window otherwise)."""

    user_id: str
    drift_detected: bool
    score: float | None
    threshold: float
    threshold_basis: ThresholdBasis
    scored_window: WindowOut
    reference_window: list[WindowOut]
    newest_window: WindowOut
    # Interests gained and lost by the newest window against the detection's reference;
    # empty when the user is not drifting.
    gained: list[str]
    lost: list[str]
    # The window where the reported change began; null when the user is not drifting.
    detected_window: WindowOut | None


class RecommendationOut(BaseModel):
    item_id: str
    # The catalog's title, so a client can show the item without a catalog of its own (null
    # for an item the catalog no longer has).
    title: str | None
    score: float
    reason: str


class RecommendationsOut(BaseModel):
    user_id: str
    items: list[RecommendationOut]


class RebuildOut(BaseModel):
    build_id: str
    factory: str
    embedder: str
    dimension: int
    count: int
    source_hash: str
    built_at: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    error: ErrorBody


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def window_out(window: WindowInfo) -> WindowOut:
    return WindowOut(
        index=window.index,
        start=iso(window.start),
        end=iso(window.end),
        events=window.events,
        closed=window.closed,
    )


def profile_out(profile: Profile) -> ProfileOut:
    return ProfileOut(
        user_id=profile.user_id,
        window=window_out(profile.window),
        summary=profile.summary,
        interests=[
            InterestOut(label=i.label, weight=i.weight, evidence=list(i.evidence))
            for i in profile.interests
        ],
        provenance=profile.provenance,
        drift=window_drift_out(profile.drift) if profile.drift else None,
        created_at=iso(profile.created_at),
    )


def window_drift_out(drift: WindowDrift) -> WindowDriftOut:
    return WindowDriftOut(
        score=drift.score,
        threshold=drift.threshold,
        threshold_basis=drift.threshold_basis,
        detected=drift.detected,
        reference=list(drift.reference),
        gained=list(drift.gained),
        lost=list(drift.lost),
    )


def drift_out(report: DriftReport) -> DriftOut:
    return DriftOut(
        user_id=report.user_id,
        drift_detected=report.drift_detected,
        score=report.score,
        threshold=report.threshold,
        threshold_basis=report.threshold_basis,
        scored_window=window_out(report.scored_window),
        reference_window=[window_out(w) for w in report.reference_window],
        newest_window=window_out(report.newest_window),
        gained=report.gained,
        lost=report.lost,
        detected_window=window_out(report.detected_window) if report.detected_window else None,
    )


def titles_of(store: Store, items: list[Recommendation]) -> dict[str, str]:
    """The catalog's titles of the recommended items (one lookup by primary key)."""
    return {
        item_id: item.title for item_id, item in store.items.get(r.item_id for r in items).items()
    }


def recommendations_out(
    user_id: str, items: list[Recommendation], titles: Mapping[str, str]
) -> RecommendationsOut:
    return RecommendationsOut(
        user_id=user_id,
        items=[
            RecommendationOut(
                item_id=r.item_id, title=titles.get(r.item_id), score=r.score, reason=r.reason
            )
            for r in items
        ],
    )


# Documented error answers per route (the envelope above), for the OpenAPI document.
Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {
    400: {"model": ErrorOut, "description": "Malformed JSON"},
    401: {"model": ErrorOut, "description": "Missing API key (only when keys are configured)"},
    403: {"model": ErrorOut, "description": "Wrong API key"},
    413: {"model": ErrorOut, "description": "Body or batch too large"},
    422: {"model": ErrorOut, "description": "Invalid request"},
    429: {"model": ErrorOut, "description": "Rate limit exceeded; see Retry-After"},
}
USER_ERRORS: Responses = {**ERRORS, 404: {"model": ErrorOut, "description": "Unknown user"}}
UNAVAILABLE: Responses = {503: {"model": ErrorOut, "description": "Item index not loaded"}}
