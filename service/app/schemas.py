"""Wire types of the REST API (and the CLI's JSON output), and conversions from domain records."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.core.records import DriftReport, Event, Item, Profile, WindowDrift, WindowInfo
from service.retrieval.recommender import Recommendation

# 1970 to 2200: anything outside is a unit mistake (milliseconds) or garbage, not an event.
MIN_TS, MAX_TS = 0.0, 7_258_118_400.0
Identifier = Field(min_length=1, max_length=256)
# User ids travel in URL paths: a "/" would make a user that can never be read or deleted.
UserId = Field(min_length=1, max_length=256, pattern=r"^[^/]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemIn(_Strict):
    item_id: str = Identifier
    title: str = Field(min_length=1, max_length=1_000)
    text: str = Field(default="", max_length=20_000)
    categories: list[str] = Field(default_factory=list, max_length=50)
    attributes: dict[str, Any] = Field(default_factory=dict)

    def to_item(self) -> Item:
        return Item(self.item_id, self.title, self.text, tuple(self.categories), self.attributes)


class ItemsIn(_Strict):
    items: list[ItemIn]


class EventIn(_Strict):
    event_id: str | None = Field(default=None, min_length=1, max_length=256)
    user_id: str = UserId
    item_id: str = Identifier
    type: str = Field(min_length=1, max_length=64)
    ts: float | str = Field(description="ISO-8601 date-time or epoch seconds")
    value: float | None = None

    @field_validator("user_id")
    @classmethod
    def _addressable(cls, value: str) -> str:
        if value in {".", ".."}:  # /users/.. is the parent path to every browser and proxy
            raise ValueError("a user id cannot be '.' or '..'")
        return value

    @field_validator("ts", "value", mode="before")
    @classmethod
    def _no_booleans(cls, value: object) -> object:
        if isinstance(value, bool):  # JSON true is not a time or a rating
            raise ValueError("must be a number, not a boolean")
        return value

    @field_validator("ts")
    @classmethod
    def _parse_ts(cls, value: float | str) -> float:
        return parse_timestamp(value)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("value must be a finite number")
        return value

    def to_event(self) -> Event:
        assert isinstance(self.ts, float)
        return Event(
            event_id=self.event_id or self.content_id(),
            user_id=self.user_id,
            item_id=self.item_id,
            type=self.type,
            ts=self.ts,
            value=self.value,
        )

    def content_id(self) -> str:
        """An event without an id is identified by its content, so a retried batch is not
        counted twice."""
        key = f"{self.user_id}\x00{self.item_id}\x00{self.type}\x00{self.ts}\x00{self.value}"
        return "h:" + hashlib.sha256(key.encode()).hexdigest()[:24]


class EventsIn(_Strict):
    events: list[EventIn]


def parse_timestamp(value: float | str) -> float:
    if isinstance(value, str):
        try:
            return parse_timestamp(float(value))
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                "ts must be ISO-8601 (2024-05-01T12:00:00Z) or epoch seconds"
            ) from None
        if parsed.tzinfo is None:  # a naive time is taken as UTC, the only sane server default
            parsed = parsed.replace(tzinfo=timezone.utc)
        value = parsed.timestamp()
    if not math.isfinite(value) or not MIN_TS <= value <= MAX_TS:
        raise ValueError("ts must be between 1970-01-01 and 2200-01-01 (epoch seconds, not ms)")
    return float(value)


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
    """This window against the windows before it (null score for a user's first window)."""

    score: float | None
    threshold: float
    detected: bool
    gained: list[str]
    lost: list[str]


class ProfileOut(BaseModel):
    user_id: str
    window: WindowOut
    summary: str
    interests: list[InterestOut]
    provenance: dict[str, Any]
    drift_score: float | None
    drift: WindowDriftOut | None
    created_at: str


class HistoryOut(BaseModel):
    user_id: str
    profiles: list[ProfileOut]


class DriftOut(BaseModel):
    user_id: str
    drift_detected: bool
    score: float | None
    threshold: float
    current_window: WindowOut | None
    reference_window: list[WindowOut]
    gained: list[str]
    lost: list[str]


class RecommendationOut(BaseModel):
    item_id: str
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
        drift_score=profile.drift_score,
        drift=window_drift_out(profile.drift) if profile.drift else None,
        created_at=iso(profile.created_at),
    )


def window_drift_out(drift: WindowDrift) -> WindowDriftOut:
    return WindowDriftOut(
        score=drift.score,
        threshold=drift.threshold,
        detected=drift.detected,
        gained=list(drift.gained),
        lost=list(drift.lost),
    )


def drift_out(report: DriftReport) -> DriftOut:
    return DriftOut(
        user_id=report.user_id,
        drift_detected=report.drift_detected,
        score=report.score,
        threshold=report.threshold,
        current_window=window_out(report.current_window) if report.current_window else None,
        reference_window=[window_out(w) for w in report.reference_window],
        gained=report.gained,
        lost=report.lost,
    )


def recommendations_out(user_id: str, items: list[Recommendation]) -> RecommendationsOut:
    return RecommendationsOut(
        user_id=user_id,
        items=[RecommendationOut(item_id=r.item_id, score=r.score, reason=r.reason) for r in items],
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
