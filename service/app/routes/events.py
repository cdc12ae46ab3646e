"""Event ingestion: idempotent batches (a retried batch is never counted twice)."""

from __future__ import annotations

from service.app.deps import ApiSettingsDep, StoreDep, check_batch
from service.app.routes import v1_router
from service.app.schemas import ERRORS, IngestOut
from service.ingest.validation import EventsIn

router = v1_router()


@router.post("/events", tags=["events"], operation_id="add_events", responses=ERRORS)
def add_events(body: EventsIn, store: StoreDep, api: ApiSettingsDep) -> IngestOut:
    check_batch(len(body.events), api)
    result = store.events.add([e.to_event() for e in body.events])
    return IngestOut(**result.__dict__)
