"""A user's profile, profile history, drift, recommendations, and deletion.

The read routes are the hot ones: each runs its work and JSON encoding in one handler-thread
call (``answer_in_thread``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response

from service.app.deps import ProfilerDep, RecommenderDep, StoreDep
from service.app.errors import ApiError
from service.app.handler_threads import answer_in_thread
from service.app.routes import v1_router
from service.app.schemas import (
    UNAVAILABLE,
    USER_ERRORS,
    DriftOut,
    HistoryOut,
    ProfileOut,
    RecommendationsOut,
    drift_out,
    profile_out,
    recommendations_out,
    titles_of,
)
from service.profiling.profiler import UnknownUser
from service.retrieval.index.folders import IndexUnavailable

router = v1_router("/users/{user_id}")


@router.get(
    "/profile",
    tags=["profiles"],
    operation_id="get_profile",
    response_model=ProfileOut,
    responses=USER_ERRORS,
)
async def get_profile(user_id: str, profiler: ProfilerDep, refresh: bool = False) -> Response:
    return await answer_in_thread(lambda: profile_out(profiler.current(user_id, refresh=refresh)))


@router.get(
    "/profiles",
    tags=["profiles"],
    operation_id="get_profile_history",
    response_model=HistoryOut,
    responses=USER_ERRORS,
)
async def get_history(
    user_id: str,
    profiler: ProfilerDep,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> Response:
    def history() -> HistoryOut:
        profiles = profiler.history(user_id, limit=limit)
        return HistoryOut(user_id=user_id, profiles=[profile_out(p) for p in profiles])

    return await answer_in_thread(history)


@router.get(
    "/drift",
    tags=["profiles"],
    operation_id="get_drift",
    response_model=DriftOut,
    responses=USER_ERRORS,
)
async def get_drift(user_id: str, profiler: ProfilerDep) -> Response:
    return await answer_in_thread(lambda: drift_out(profiler.drift(user_id)))


@router.get(
    "/recommendations",
    tags=["recommendations"],
    operation_id="get_recommendations",
    response_model=RecommendationsOut,
    responses={**USER_ERRORS, **UNAVAILABLE},
)
async def get_recommendations(
    user_id: str,
    profiler: ProfilerDep,
    recommender: RecommenderDep,
    store: StoreDep,
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> Response:
    def recommendations() -> RecommendationsOut:
        profile, history = profiler.current_with_history(user_id)
        try:
            items = recommender.recommend(profile, k, history)
        except IndexUnavailable as error:
            raise ApiError(503, "index_unavailable", str(error)) from error
        return recommendations_out(user_id, items, titles_of(store, items))

    return await answer_in_thread(recommendations)


@router.delete(
    "", tags=["profiles"], operation_id="delete_user", status_code=204, responses=USER_ERRORS
)
def delete_user(user_id: str, profiler: ProfilerDep) -> Response:
    if not profiler.delete(user_id):
        raise UnknownUser(user_id)
    return Response(status_code=204)
