"""The inspector: a web page for reading profiles, their history and drift.

The page itself is a static shell (HTML, CSS and one dependency-free script) served without
auth. The script reads everything from ``/v1/inspector/*`` with the API key the person typed,
kept in the browser's sessionStorage and never in a URL, so the page works the same with keys
on or off and the data stays behind the same check as the rest of ``/v1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from service.app.deps import ProfilerDep, RecommenderDep, StoreDep, require_key
from service.app.schemas import (
    ERRORS,
    USER_ERRORS,
    ProfileOut,
    RecommendationOut,
    WindowOut,
    iso,
    profile_out,
    recommendations_out,
    titles_of,
    window_out,
)
from service.core.records import Profile
from service.retrieval.index.folders import IndexUnavailable

WEB = Path(__file__).resolve().parent / "web"
RECOMMENDATIONS_SHOWN = 10
# Pages are plain files; this policy forbids inline script and any other origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class ItemBrief(BaseModel):
    title: str
    categories: list[str]


class UserInspection(BaseModel):
    user_id: str
    profile: ProfileOut
    history: list[ProfileOut]
    recommendations: list[RecommendationOut]
    recommendations_error: str | None
    items: dict[str, ItemBrief]


class DriftEntry(BaseModel):
    user_id: str
    window: WindowOut
    score: float | None
    threshold: float
    gained: list[str]
    lost: list[str]


class FallbackEntry(BaseModel):
    user_id: str
    window: WindowOut
    fallback_reason: str
    model: str | None
    quantization: str | None
    created_at: str


class Overview(BaseModel):
    users: int
    recent_drift: list[DriftEntry]
    recent_fallbacks: list[FallbackEntry]
    # Stored profiles made from the fallback, by the check the LLM's answer failed.
    fallback_checks: dict[str, int]


def inspector_api() -> APIRouter:
    router = APIRouter(
        prefix="/v1/inspector", tags=["inspector"], dependencies=[Depends(require_key)]
    )

    @router.get(
        "/users/{user_id}",
        operation_id="inspect_user",
        responses=USER_ERRORS,
    )
    def inspect_user(
        user_id: str, profiler: ProfilerDep, recommender: RecommenderDep, store: StoreDep
    ) -> UserInspection:
        history = profiler.history(user_id)  # UnknownUser: the handler's 404
        current = history[-1]
        recommendations, problem = [], None
        try:
            picked = recommender.recommend(current, RECOMMENDATIONS_SHOWN)
            titles = titles_of(store, picked)
            recommendations = recommendations_out(user_id, picked, titles).items
        except IndexUnavailable as error:
            problem = str(error)
        item_ids = [i for p in history for interest in p.interests for i in interest.evidence]
        items = store.items.get(item_ids + [r.item_id for r in recommendations])
        return UserInspection(
            user_id=user_id,
            profile=profile_out(current),
            history=[profile_out(p) for p in history],
            recommendations=recommendations,
            recommendations_error=problem,
            items={
                i: ItemBrief(title=v.title, categories=list(v.categories)) for i, v in items.items()
            },
        )

    @router.get("/overview", operation_id="inspect_overview", responses=ERRORS)
    def overview(store: StoreDep, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> Overview:
        return Overview(
            users=store.events.count_users(),
            recent_drift=[_drift_entry(p) for p in store.profiles.recent_drifts(limit)],
            recent_fallbacks=[_fallback_entry(p) for p in store.profiles.recent_fallbacks(limit)],
            fallback_checks=store.profiles.fallback_checks(),
        )

    return router


def _drift_entry(profile: Profile) -> DriftEntry:
    drift = profile.drift
    assert drift is not None  # recent_drifts only returns windows with a verdict
    return DriftEntry(
        user_id=profile.user_id,
        window=window_out(profile.window),
        score=drift.score,
        threshold=drift.threshold,
        gained=list(drift.gained),
        lost=list(drift.lost),
    )


def _fallback_entry(profile: Profile) -> FallbackEntry:
    provenance = profile.provenance
    return FallbackEntry(
        user_id=profile.user_id,
        window=window_out(profile.window),
        fallback_reason=str(provenance.get("fallback_reason")),
        model=provenance.get("model"),
        quantization=provenance.get("quantization"),
        created_at=iso(profile.created_at),
    )


def install_inspector_pages(app: FastAPI) -> None:
    """``/`` (overview and search) and ``/users/{id}`` both serve the page; its script reads
    the path and asks the API for what to show."""
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    def page() -> FileResponse:
        return FileResponse(
            WEB / "index.html",
            headers={
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "Cache-Control": "no-cache",
            },
        )

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/users/{user_id}", page, methods=["GET"], include_in_schema=False)
