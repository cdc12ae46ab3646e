"""Reliability and security: limits, crashes, index swaps, hostile input, concurrency, deletion,
and a model that misbehaves. The long versions are scripts (docs/RELIABILITY.md)."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from scripts.ops import crash_test, fuzz_api
from service.app.factory import create_app
from service.app.ratelimit import RateLimiter
from service.core.records import Event
from service.retrieval.index import build as index_build
from service.store import Store
from service.store.users import USER_TABLES
from tests.api.test_api import _error, _events, _items_body
from tests.conftest import topic_items
from tests.fixtures.pg_server import free_port

# --- auth and limits -------------------------------------------------------------------------


def test_token_bucket_allows_bursts_then_paces():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") is None  # every caller has its own bucket
    now[0] += 0.5
    assert limiter.acquire("a") is None


def test_rate_limit_answers_429_with_retry_after_per_key(settings):
    settings.api_keys, settings.rate_limit_per_second, settings.rate_limit_burst = (
        ["k1", "k2"],
        0.5,
        2,
    )
    with TestClient(create_app(settings)) as client:
        first = {"Authorization": "Bearer k1"}
        assert [
            client.get("/v1/inspector/overview", headers=first).status_code for _ in range(2)
        ] == [200, 200]
        limited = client.get("/v1/inspector/overview", headers=first)
        _error(limited, 429, "rate_limited")
        assert int(limited.headers["Retry-After"]) >= 1
        other = client.get("/v1/inspector/overview", headers={"Authorization": "Bearer k2"})
        assert other.status_code == 200
        assert client.get("/health").status_code == 200  # probes are never limited


# --- crash safety --------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_during_ingestion_loses_nothing_acknowledged(capsys):
    assert crash_test.main(["--kills", "3", "--seed", "7"]) == 0
    output = capsys.readouterr().out
    assert "acknowledged_events_lost         0" in output
    assert "events_stored_twice              0" in output


# --- index swaps --------------------------------------------------------------------------


@pytest.fixture
def served(settings):
    with TestClient(create_app(settings)) as client:
        client.put("/v1/items", json=_items_body(topic_items()))
        client.post("/v1/events", json={"events": _events("u", ["baking-00", "baking-01"])})
        assert client.post("/v1/index/rebuild").status_code == 200
        yield client


def test_rebuilds_under_query_load_fail_no_query(served):
    stop, statuses = threading.Event(), []

    def query() -> None:
        while not stop.is_set():
            statuses.append(served.get("/v1/users/u/recommendations?k=5").status_code)

    readers = [threading.Thread(target=query) for _ in range(3)]
    for reader in readers:
        reader.start()
    rebuilds = [served.post("/v1/index/rebuild").status_code for _ in range(5)]
    stop.set()
    for reader in readers:
        reader.join()
    assert rebuilds == [200] * 5
    assert len(statuses) > 10 and set(statuses) == {200}


def test_a_rebuild_that_crashes_midway_leaves_the_old_index_serving(served, settings, monkeypatch):
    before = (settings.index_dir / "CURRENT").read_text()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(index_build.VectorFile, "append", disk_full)
    failed = served.post("/v1/index/rebuild")
    error = _error(failed, 500, "index_build_failed")
    assert "previous index keeps serving" in error["message"] and "No space" not in error["message"]
    assert (settings.index_dir / "CURRENT").read_text() == before
    assert not [p for p in (settings.index_dir / "builds").iterdir() if p.name.startswith(".")]
    assert served.get("/v1/users/u/recommendations?k=3").status_code == 200


@pytest.mark.parametrize(
    "damage",
    ["garbage index", "other embedder", "binary pointer", "ids not a list", "vectors misshapen"],
)
def test_a_corrupt_or_mismatched_index_is_refused_at_start_with_a_message(settings, damage):
    with TestClient(create_app(settings)) as client:
        client.put("/v1/items", json=_items_body(topic_items()))
        client.post("/v1/index/rebuild")
    build = settings.index_dir / "builds" / (settings.index_dir / "CURRENT").read_text().strip()
    if damage == "garbage index":
        (build / "index.faiss").write_bytes(b"\x00not a faiss index")
    elif damage == "other embedder":
        manifest = json.loads((build / "manifest.json").read_text())
        (build / "manifest.json").write_text(json.dumps({**manifest, "embedder": "other-model"}))
    elif damage == "binary pointer":
        (settings.index_dir / "CURRENT").write_bytes(b"\xff\xfe\x00")
    elif damage == "ids not a list":
        (build / "item_ids.json").write_text("5")
    else:
        np.save(build / "vectors.npy", np.zeros((2, 7), dtype=np.float32))
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        problem = ready.json()["checks"]["index"]
        assert "Traceback" not in problem and "rebuild" in problem
        client.post("/v1/events", json={"events": _events("u", ["baking-00"])})
        _error(client.get("/v1/users/u/recommendations"), 503, "index_unavailable")


# --- hostile input ---------------------------------------------------------------------------


@pytest.mark.slow
def test_fuzzing_from_the_openapi_document_finds_no_5xx_and_no_schema_violation(tmp_path):
    with fuzz_api.fuzz_target(tmp_path) as app:
        report = fuzz_api.fuzz(fuzz_api.app_schema(app), examples=15)
    assert report.failures == {}
    assert report.total >= 250


@pytest.mark.slow
def test_fuzzing_a_running_server_over_http_finds_no_5xx(tmp_path):
    port = free_port()
    with (
        crash_test.running_server(tmp_path, port),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):
        fuzz_api.seed(client)
        schema = fuzz_api.deployment_schema(f"http://127.0.0.1:{port}", key=None)
        report = fuzz_api.fuzz(schema, examples=3, key=None)
    assert report.failures == {}
    assert len(report.cases) >= 20  # every operation, both modes, reached over HTTP


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"events": [{"user_id": "u" * 100_000, "item_id": "i", "type": "view", "ts": 1}]}, 422),
        ({"events": [{"user_id": "u", "item_id": "i", "type": "view", "ts": 1e308 * 10}]}, 422),
        ({"events": [{"user_id": "u", "item_id": "i", "type": "view", "ts": 10**400}]}, 422),
        (
            {
                "events": [
                    {"user_id": "u", "item_id": "i", "type": "rate", "ts": 1, "value": 10**400}
                ]
            },
            422,
        ),
        ({"events": [{"user_id": "u", "item_id": "i", "type": "view", "ts": -1}]}, 422),
        (
            {
                "events": [
                    {"user_id": "u", "item_id": "i", "type": "view", "ts": "9999-01-01T00:00:00Z"}
                ]
            },
            422,
        ),
        (
            {
                "events": [
                    {"user_id": "u", "item_id": "i", "type": "view", "ts": "0001-01-01T00:00:00"}
                ]
            },
            422,
        ),
    ],
)
def test_out_of_range_values_are_refused(client, body, status):
    response = client.post(
        "/v1/events",
        content=json.dumps(body).replace("Infinity", "1e999"),
        headers={"content-type": "application/json"},
    )
    _error(response, status, "invalid_request")


def test_invalid_utf8_and_deep_nesting_are_4xx(client):
    invalid = b'{"events": [{"user_id": "\xff\xfe", "item_id": "i", "type": "view", "ts": 1}]}'
    response = client.post(
        "/v1/events", content=invalid, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500 and response.json()["error"]["code"]
    deep = (
        '{"items": [{"item_id": "a", "title": "t", "attributes": '
        + '{"x": ' * 5_000
        + "1"
        + "}" * 5_000
        + "}]}"
    )
    response = client.put("/v1/items", content=deep, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500 and response.json()["error"]["code"]


def test_control_characters_are_refused_and_long_unicode_text_round_trips(client):
    refused = client.put(
        "/v1/items", json={"items": [{"item_id": "odd", "title": "bell \x07", "categories": []}]}
    )
    assert refused.status_code == 422 and "items.0.title" in refused.json()["error"]["message"]
    title = "\u202e reversed, 🎷 " + "x" * 900
    text = "Tab\there\nand a new line"
    client.put(
        "/v1/items",
        json={"items": [{"item_id": "odd", "title": title, "text": text, "categories": ["Jazz"]}]},
    )
    client.post(
        "/v1/events", json={"events": [{"user_id": "u", "item_id": "odd", "type": "view", "ts": 1}]}
    )
    profile = client.get("/v1/users/u/profile")
    assert profile.status_code == 200 and profile.json()["interests"][0]["evidence"] == ["odd"]
    stored = client.app.state.services.store.items.get(["odd"])["odd"]
    assert (stored.title, stored.text) == (title, text)


def test_duplicate_ids_within_one_batch_count_once(client):
    event = {"event_id": "same", "user_id": "u", "item_id": "i", "type": "view", "ts": 1}
    answer = client.post("/v1/events", json={"events": [event, event, {**event, "ts": 2}]}).json()
    assert (answer["accepted"], answer["duplicates"]) == (1, 2)


# --- concurrency -------------------------------------------------------------------------------


def test_parallel_writers_and_readers_in_one_process(served):
    batches = [
        _events(f"w{n}", [f"astronomy-{i:02d}" for i in range(10)], start=1_700_000_000 + n)
        for n in range(40)
    ]

    def write(batch):
        return "write", served.post("/v1/events", json={"events": batch}).status_code

    def read(_):
        return "read", served.get("/v1/users/u/recommendations?k=3").status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        # Writes and reads submitted interleaved, so they really run side by side.
        futures = []
        for batch in batches:
            futures += [pool.submit(write, batch), pool.submit(read, None)]
        results = [future.result() for future in futures]
    assert {status for _, status in results} == {200}
    assert sum(kind == "read" for kind, _ in results) == 40
    store = served.app.state.services.store
    assert sum(len(store.events.of_user(f"w{n}")) for n in range(40)) == 400


def _write_from_another_process(path: str, writer: int, batches: int) -> None:
    store = Store(__import__("pathlib").Path(path))
    for batch in range(batches):
        events = [
            Event(f"p{writer}-{batch}-{i}", f"proc-{writer}", f"item-{i}", "view", float(i))
            for i in range(20)
        ]
        store.events.add(events)
        store.profiles.of_user(f"proc-{writer}")  # a read between writes
    store.close()


def test_parallel_writer_processes_on_one_database_lose_nothing(settings):
    Store(settings.database_path).close()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_write_from_another_process, args=(str(settings.database_path), w, 50)
        )
        for w in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]  # no "database is locked"
    count = (
        sqlite3.connect(settings.database_path).execute("SELECT COUNT(*) FROM events").fetchone()[0]
    )
    assert count == 4 * 50 * 20


# --- deletion -----------------------------------------------------------------------------------


def test_after_delete_nothing_of_the_user_remains_in_the_database(served, settings):
    user = "erase-me-7f3a"
    served.post("/v1/events", json={"events": _events(user, [f"baking-{n:02d}" for n in range(8)])})
    assert served.get(f"/v1/users/{user}/drift").status_code == 200
    assert served.get(f"/v1/users/{user}/recommendations").status_code == 200
    served.app.state.services.recommender.candidates.writer.flush()  # lists are written behind
    conn = sqlite3.connect(settings.database_path)

    def rows() -> list[int]:
        return [
            conn.execute(f"SELECT COUNT(*) FROM {table} WHERE user_id = ?", (user,)).fetchone()[0]
            for table in USER_TABLES
        ]

    assert all(rows())  # every table held something of the user
    assert served.delete(f"/v1/users/{user}").status_code == 204
    assert rows() == [0] * len(USER_TABLES)
    conn.close()
    raw = b"".join(p.read_bytes() for p in settings.data_dir.iterdir() if p.is_file())
    assert user.encode() not in raw  # not in free pages, not in the WAL either
    _error(served.get(f"/v1/users/{user}/profile"), 404, "unknown_user")


def test_lists_waiting_to_be_written_are_not_stored_for_a_deleted_user(served, settings):
    user = "erase-me-too"
    served.post("/v1/events", json={"events": _events(user, ["baking-01", "baking-02"])})
    writer = served.app.state.services.recommender.candidates.writer
    writer.delay = 60.0  # keep the lists waiting until the deletion is done
    assert served.get(f"/v1/users/{user}/recommendations").status_code == 200
    assert writer.pending(user) is not None
    assert served.delete(f"/v1/users/{user}").status_code == 204
    writer.flush()
    conn = sqlite3.connect(settings.database_path)
    query = "SELECT COUNT(*) FROM candidate_lists WHERE user_id = ?"
    assert conn.execute(query, (user,)).fetchone()[0] == 0
    conn.close()


def test_items_added_after_the_last_build_do_not_break_recommendations(served):
    new_item = {"item_id": "new-1", "title": "Brand new", "categories": ["New"]}
    served.put("/v1/items", json={"items": [new_item]})
    served.post("/v1/events", json={"events": _events("fresh", ["new-1", "new-1", "baking-03"])})
    response = served.get("/v1/users/fresh/recommendations?k=5")
    assert response.status_code == 200 and len(response.json()["items"]) == 5
    assert "new-1" not in {r["item_id"] for r in response.json()["items"]}


def test_failed_key_attempts_are_rate_limited_too(settings):
    settings.api_keys, settings.rate_limit_per_second, settings.rate_limit_burst = ["k"], 0.1, 3
    with TestClient(create_app(settings)) as client:
        wrong = {"Authorization": "Bearer guess"}
        statuses = [
            client.get("/v1/inspector/overview", headers=wrong).status_code for _ in range(5)
        ]
        assert statuses == [403, 403, 403, 429, 429]
