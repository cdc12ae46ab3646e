"""The catalog: item upserts and the index rebuild."""

from __future__ import annotations

from service.app.deps import ApiSettingsDep, IndexDep, StoreDep, check_batch
from service.app.errors import ApiError
from service.app.routes import v1_router
from service.app.schemas import ERRORS, ErrorOut, RebuildOut, UpsertedOut, iso
from service.ingest.validation import ItemsIn
from service.retrieval.index.folders import IndexUnavailable
from service.retrieval.index.serving import IndexBuildFailed

router = v1_router()


@router.put("/items", tags=["catalog"], operation_id="upsert_items", responses=ERRORS)
def upsert_items(body: ItemsIn, store: StoreDep, api: ApiSettingsDep) -> UpsertedOut:
    check_batch(len(body.items), api)
    return UpsertedOut(upserted=store.items.upsert(i.to_item() for i in body.items))


@router.post(
    "/index/rebuild",
    tags=["index"],
    operation_id="rebuild_index",
    responses={**ERRORS, 409: {"model": ErrorOut, "description": "Empty catalog"}},
)
def rebuild_index(index: IndexDep, store: StoreDep) -> RebuildOut:
    try:
        manifest = index.rebuild(store)
    except IndexUnavailable as error:
        raise ApiError(409, "empty_catalog", str(error)) from error
    except IndexBuildFailed as error:
        raise ApiError(500, "index_build_failed", str(error)) from error
    return RebuildOut(**{**manifest.__dict__, "built_at": iso(manifest.built_at)})
