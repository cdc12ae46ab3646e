"""The REST contract in-process: lifespan running, fake embedder, real SQLite and FAISS."""

import threading

import pytest
from fastapi.testclient import TestClient

from scripts.ops.smoke_client import events as scenario_events
from service.app.factory import create_app
from service.app.schemas import DriftOut, HistoryOut, ProfileOut, RecommendationsOut
from tests.conftest import topic_items

DAY = 86_400


def _items_body(items):
    return {
        "items": [
            {
                "item_id": i.item_id,
                "title": i.title,
                "text": i.text,
                "categories": list(i.categories),
            }
            for i in items
        ]
    }


def _events(user, item_ids, start=1_700_000_000):
    return scenario_events(user, item_ids, start)


@pytest.fixture
def loaded(client):
    assert client.put("/v1/items", json=_items_body(topic_items())).json() == {"upserted": 20}
    assert client.post("/v1/index/rebuild").status_code == 200
    astronomy = [f"astronomy-{n:02d}" for n in range(6)]
    baking = [f"baking-{n:02d}" for n in range(6)]
    client.post("/v1/events", json={"events": _events("shifter", astronomy + baking)})
    return client


def _error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


def test_health_and_readiness(client):
    assert client.get("/health").json() == {"status": "ok"}
    not_ready = client.get("/ready")
    assert (
        not_ready.status_code == 503 and "iprof build-index" in not_ready.json()["checks"]["index"]
    )
    client.put("/v1/items", json=_items_body(topic_items()))
    rebuilt = client.post("/v1/index/rebuild").json()
    assert rebuilt["count"] == 20 and rebuilt["factory"] == "Flat"
    assert client.get("/ready").json()["ready"] is True


def test_events_report_duplicates_and_unknown_items(client):
    client.put("/v1/items", json=_items_body(topic_items()))
    batch = {
        "events": _events("u", ["astronomy-00", "nope"])
        + [{"user_id": "u", "item_id": "baking-01", "type": "click", "ts": "2024-01-02T03:04:05Z"}]
    }
    assert client.post("/v1/events", json=batch).json() == {
        "accepted": 3,
        "duplicates": 0,
        "unknown_items": 1,
    }
    # Retried whole: with or without event ids, nothing is counted twice.
    assert client.post("/v1/events", json=batch).json() == {
        "accepted": 0,
        "duplicates": 3,
        "unknown_items": 1,
    }


def test_profile_history_drift_recommendations_delete(loaded):
    client = loaded
    profile = client.get("/v1/users/shifter/profile").json()
    assert set(profile) >= {
        "user_id",
        "window",
        "summary",
        "interests",
        "provenance",
        "drift",
        "created_at",
    }
    assert "drift_score" not in profile  # dropped: it repeated drift.score
    assert profile["interests"][0]["label"] == "Baking"
    assert set(profile["provenance"]) >= {
        "summarizer",
        "model",
        "quantization",
        "prompt_hash",
        "embedder",
        "fallback_reason",
        "duration_ms",
    }
    assert (
        profile["provenance"]["summarizer"] == "extractive"
        and profile["provenance"]["embedder"] == "hashing-256"
    )
    history = client.get("/v1/users/shifter/profiles").json()["profiles"]
    assert len(history) >= 2 and history[0]["drift"]["score"] is None
    assert history[0]["drift"]["reference"] == []
    assert history[1]["drift"]["reference"] == [history[0]["window"]["index"]]
    assert [p["window"]["index"] for p in history] == sorted(p["window"]["index"] for p in history)
    assert len(client.get("/v1/users/shifter/profiles?limit=1").json()["profiles"]) == 1
    drift = client.get("/v1/users/shifter/drift").json()
    assert set(drift) == {
        "user_id",
        "drift_detected",
        "score",
        "threshold",
        "threshold_basis",
        "scored_window",
        "reference_window",
        "newest_window",
        "gained",
        "lost",
        "detected_window",
    }
    assert drift["newest_window"]["index"] == history[-1]["window"]["index"]
    # The verdict it rests on is a stored window's, with that window's reference.
    scored = next(p for p in history if p["window"] == drift["scored_window"])
    assert (drift["score"], drift["threshold"]) == (
        scored["drift"]["score"],
        scored["drift"]["threshold"],
    )
    assert [w["index"] for w in drift["reference_window"]] == scored["drift"]["reference"]
    recs = client.get("/v1/users/shifter/recommendations?k=5").json()["items"]
    assert len(recs) == 5 and all(r["reason"] for r in recs)
    # Each item carries its catalog title, so a client needs no catalog of its own.
    catalog = {item.item_id: item.title for item in topic_items()}
    assert all(r["title"] == catalog[r["item_id"]] for r in recs)
    seen = {f"astronomy-{n:02d}" for n in range(6)} | {f"baking-{n:02d}" for n in range(6)}
    assert not {r["item_id"] for r in recs} & seen
    refreshed = client.get("/v1/users/shifter/profile?refresh=true").json()
    assert refreshed["created_at"] >= profile["created_at"]
    assert client.delete("/v1/users/shifter").status_code == 204
    for path in ("profile", "profiles", "drift", "recommendations"):
        _error(client.get(f"/v1/users/shifter/{path}"), 404, "unknown_user")
    _error(client.delete("/v1/users/shifter"), 404, "unknown_user")


def test_recommendations_without_an_index_are_503_not_500(client):
    client.put("/v1/items", json=_items_body(topic_items()))
    client.post("/v1/events", json={"events": _events("u", ["astronomy-00"])})
    _error(client.get("/v1/users/u/recommendations"), 503, "index_unavailable")


def test_rebuild_of_an_empty_catalog_is_a_conflict(client):
    _error(client.post("/v1/index/rebuild"), 409, "empty_catalog")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        (
            "post",
            "/v1/events",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "malformed_json",
        ),
        (
            "post",
            "/v1/events",
            {"json": {"events": [{"user_id": "u", "item_id": "i", "type": "view"}]}},
            422,
            "invalid_request",
        ),
        (
            "post",
            "/v1/events",
            {"json": {"events": [{"user_id": 5, "item_id": "i", "type": "view", "ts": 1}]}},
            422,
            "invalid_request",
        ),
        (
            "post",
            "/v1/events",
            {
                "json": {
                    "events": [{"user_id": "u", "item_id": "i", "type": "view", "ts": "yesterday"}]
                }
            },
            422,
            "invalid_request",
        ),
        (
            "post",
            "/v1/events",
            {"json": {"events": [{"user_id": "u", "item_id": "i", "type": "view", "ts": 1e15}]}},
            422,
            "invalid_request",
        ),
        ("post", "/v1/events", {"json": {"events": "all of them"}}, 422, "invalid_request"),
        (
            "put",
            "/v1/items",
            {"json": {"items": [{"item_id": "", "title": "t"}]}},
            422,
            "invalid_request",
        ),
        (
            "put",
            "/v1/items",
            {"json": {"items": [{"item_id": "a", "title": "t", "colour": "red"}]}},
            422,
            "invalid_request",
        ),
        ("put", "/v1/items", {"json": [1, 2]}, 422, "invalid_request"),
        ("get", "/v1/users/ghost/profile", {}, 404, "unknown_user"),
        ("get", "/v1/users/shifter/recommendations?k=0", {}, 422, "invalid_request"),
        ("get", "/v1/users/shifter/recommendations?k=1001", {}, 422, "invalid_request"),
        ("get", "/v1/users/shifter/recommendations?k=ten", {}, 422, "invalid_request"),
        ("get", "/v1/users/shifter/profiles?limit=-1", {}, 422, "invalid_request"),
        ("get", "/v1/nowhere", {}, 404, "not_found"),
        ("delete", "/v1/items", {}, 405, "method_not_allowed"),
    ],
)
def test_bad_input_gets_a_4xx_envelope(loaded, method, path, kwargs, status, code):
    error = _error(getattr(loaded, method)(path, **kwargs), status, code)
    assert "Traceback" not in str(error)


def test_oversized_batches_are_refused_and_nothing_is_lost(settings):
    settings.max_batch = 3
    with TestClient(create_app(settings)) as client:
        client.put("/v1/items", json=_items_body(topic_items(2)))
        assert (
            client.post("/v1/events", json={"events": _events("u", ["astronomy-00"])}).status_code
            == 200
        )
        _error(
            client.post("/v1/events", json={"events": _events("v", ["astronomy-00"] * 4)}),
            413,
            "batch_too_large",
        )
        _error(client.put("/v1/items", json=_items_body(topic_items(4))), 413, "batch_too_large")
        assert client.get("/v1/users/u/profile").status_code == 200


def test_api_keys_guard_v1_but_not_probes(settings):
    settings.api_keys = ["s3cret", "other"]
    with TestClient(create_app(settings)) as client:
        _error(client.get("/v1/users/u/profile"), 401, "unauthorized")
        _error(
            client.get("/v1/users/u/profile", headers={"Authorization": "Bearer nope"}),
            403,
            "forbidden",
        )
        authed = client.get("/v1/users/u/profile", headers={"Authorization": "Bearer other"})
        _error(authed, 404, "unknown_user")
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code in (200, 503)


def test_metrics_count_requests(client):
    client.get("/health")
    text = client.get("/metrics").text
    assert 'iprof_requests_total{method="GET",route="/health",status="200"}' in text
    assert 'iprof_store_connections{state="open"} 1.0' in text  # SQLite: one connection
    assert 'iprof_store_unavailable_total{why="timeout"} 0.0' in text
    assert "iprof_index_build_info{" not in text  # no index served yet


def test_metrics_name_the_index_build_served(loaded):
    build = loaded.get("/ready").json()["checks"]["index_build"]
    assert f'iprof_index_build_info{{build="{build}"}} 1.0' in loaded.get("/metrics").text


@pytest.mark.parametrize(
    "event",
    [
        {"user_id": "a/b", "item_id": "i", "type": "view", "ts": 1},
        {"user_id": "u", "item_id": "i", "type": "view", "ts": True},
        {"user_id": "u", "item_id": "i", "type": "rate", "ts": 1, "value": True},
        {"user_id": "u", "item_id": "i", "type": "rate", "ts": 1, "value": "NaN"},
    ],
)
def test_events_that_could_never_be_read_back_sensibly_are_refused(client, event):
    _error(client.post("/v1/events", json={"events": [event]}), 422, "invalid_request")


def test_chunked_bodies_over_the_limit_are_refused(client, monkeypatch):
    from service.app import factory as api

    def chunks():
        for _ in range(20):
            yield b" " * (1024 * 1024)

    response = client.put(
        "/v1/items", content=chunks(), headers={"content-type": "application/json"}
    )
    assert api.MAX_BODY_BYTES < 20 * 1024 * 1024
    _error(response, 413, "payload_too_large")


def test_delete_waits_for_a_profile_being_generated(settings):
    import threading
    import time

    from service.summarizers.extractive import ExtractiveSummarizer

    class Slow(ExtractiveSummarizer):
        def summarize(self, windows):
            time.sleep(0.5)
            return super().summarize(windows)

    with TestClient(create_app(settings, summarizer=Slow())) as client:
        client.put("/v1/items", json=_items_body(topic_items(6)))
        client.post(
            "/v1/events", json={"events": _events("u", [f"baking-{n:02d}" for n in range(6)])}
        )
        reader = threading.Thread(target=client.get, args=("/v1/users/u/drift",))
        reader.start()
        time.sleep(0.1)
        assert client.delete("/v1/users/u").status_code == 204
        reader.join()
        store = client.app.state.services.store
        assert store.profiles.of_user("u") == []
        _error(client.delete("/v1/users/u"), 404, "unknown_user")


def test_metrics_count_errors_and_refusals(client):
    client.get("/v1/users/ghost/profile")
    client.post("/v1/events", content=b"x" * 10, headers={"content-length": "999999999999"})
    text = client.get("/metrics").text
    assert 'route="/v1/users/{user_id}/profile",status="404"' in text
    assert 'status="413"' in text


@pytest.mark.parametrize("route", ["profile", "profiles", "drift", "recommendations"])
def test_user_reads_answer_exactly_their_documented_model(loaded, route):
    # These routes encode their answer themselves (one thread call): the body must still be
    # JSON, declared as such, and validate against the model the OpenAPI document names.
    models = {
        "profile": ProfileOut,
        "profiles": HistoryOut,
        "drift": DriftOut,
        "recommendations": RecommendationsOut,
    }
    answer = loaded.get(f"/v1/users/shifter/{route}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert models[route].model_validate(body).model_dump(mode="json") == body


def test_handler_threads_search_with_one_openmp_thread():
    """OpenMP settings are per thread: the handler threads must set their own (see _answer)."""
    import faiss

    from service.app.handler_threads import _in_handler_thread

    def threads_seen(run) -> int:
        seen = []
        thread = threading.Thread(
            target=lambda: run(lambda: seen.append(faiss.omp_get_max_threads()))
        )
        thread.start()
        thread.join()
        return seen[0]

    if threads_seen(lambda count: count()) == 1:
        pytest.skip("one OpenMP thread by default on this machine: nothing to tell apart")

    def in_handler(count) -> None:
        _in_handler_thread(lambda: (count(), RecommendationsOut(user_id="u", items=[]))[1])

    assert threads_seen(in_handler) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": [{"item_id": "a", "title": "bad\u0000title"}]}, "items.0.title"),
        ({"items": [{"item_id": "a", "title": "bad\u001ftitle"}]}, "items.0.title"),
        ({"items": [{"item_id": "a\u0007", "title": "t"}]}, "items.0.item_id"),
        ({"items": [{"item_id": "a", "title": "t", "text": "x\u0000"}]}, "items.0.text"),
        (
            {"items": [{"item_id": "a", "title": "t", "categories": ["ok", "\u009b"]}]},
            "items.0.categories",
        ),
    ],
)
def test_control_characters_in_item_texts_are_refused_naming_the_field(client, body, field):
    error = _error(client.put("/v1/items", json=body), 422, "invalid_request")
    assert field in error["message"] and "control character" in error["message"]
    assert client.app.state.services.store.items.count() == 0  # nothing was stored


def test_tabs_and_line_breaks_stay_allowed_in_item_text(client):
    body = {"items": [{"item_id": "a", "title": "t", "text": "one\ttwo\nthree\r\n"}]}
    assert client.put("/v1/items", json=body).json() == {"upserted": 1}
    assert client.app.state.services.store.items.get(["a"])["a"].text == "one\ttwo\nthree\r\n"


@pytest.mark.parametrize("field", ["event_id", "user_id", "item_id", "type"])
def test_control_characters_in_event_fields_are_refused(client, field):
    event = {"event_id": "e1", "user_id": "u", "item_id": "i", "type": "view", "ts": 1}
    event[field] = "x\u0000y"
    error = _error(client.post("/v1/events", json={"events": [event]}), 422, "invalid_request")
    assert f"events.0.{field}" in error["message"]


def test_a_body_that_is_not_utf8_is_told_so(client):
    body = b'{"items": [{"item_id": "a", "title": "caf\xe9"}]}'  # Latin-1, not UTF-8
    response = client.put("/v1/items", content=body, headers={"content-type": "application/json"})
    error = _error(response, 400, "invalid_encoding")
    assert "UTF-8" in error["message"] and f"byte {body.index(0xE9)}" in error["message"]


def test_drift_is_read_without_a_write_and_rescored_when_its_settings_change(loaded, settings):
    client = loaded
    before = client.get("/v1/users/shifter/drift").json()  # brings the profiles up to date
    store = client.app.state.services.store
    writes = []
    saving = store.profiles.save
    store.profiles.save = lambda batch: (writes.append(batch), saving(batch))[1]
    assert client.get("/v1/users/shifter/drift").json() == before
    assert writes == []  # a GET reads the stored timeline: nothing written
    store.profiles.save = saving
    # The same store under another threshold: the stored timeline is scored again, once.
    lower = settings.model_copy(update={"drift_interest_threshold": 0.5})
    with TestClient(create_app(lower)) as other:
        history = other.get("/v1/users/shifter/profiles").json()["profiles"]
        assert all(p["drift"]["threshold"] == 0.5 for p in history)
        assert other.get("/v1/users/shifter/drift").json()["threshold"] == 0.5
    with TestClient(create_app(settings)) as again:
        assert again.get("/v1/users/shifter/drift").json() == before


def test_a_window_stored_without_its_position_gets_it_on_the_next_read(loaded):
    client = loaded
    client.get("/v1/users/shifter/profile")
    store = client.app.state.services.store
    with store.transaction() as conn:  # as a row stored before the column existed
        conn.execute("UPDATE profiles SET first_event = NULL")
    assert {p.window.first_event for p in store.profiles.of_user("shifter")} == {None}
    client.get("/v1/users/shifter/recommendations?k=3")
    assert [p.window.first_event for p in store.profiles.of_user("shifter")] == [0, 6]
