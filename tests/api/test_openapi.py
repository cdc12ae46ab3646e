import json
from pathlib import Path

from scripts.ops.export_openapi import openapi_document

SNAPSHOT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_openapi_matches_the_committed_snapshot():
    # A failure here means the API changed: if intended, run `make openapi` and commit it.
    assert openapi_document() == json.loads(SNAPSHOT.read_text())


def test_operation_ids_are_stable_and_errors_documented():
    document = openapi_document()
    operations = {
        op["operationId"]: op for path in document["paths"].values() for op in path.values()
    }
    assert {
        "upsert_items",
        "add_events",
        "get_profile",
        "get_profile_history",
        "get_drift",
        "get_recommendations",
        "delete_user",
        "rebuild_index",
        "health",
        "ready",
    } <= operations.keys()
    for name in ("add_events", "upsert_items"):
        assert {"400", "413", "422"} <= operations[name]["responses"].keys()
    assert "503" in operations["get_recommendations"]["responses"]
