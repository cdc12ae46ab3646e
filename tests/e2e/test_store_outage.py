"""PostgreSQL stopped under a client's writes, as a crash would stop it: the service answers
503 store_unavailable with Retry-After within 2 s, readiness names the store, nothing
acknowledged is lost, nothing refused is half-stored, and it answers again within 2 s of the
database's return."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app.factory import create_app
from service.core.config import Settings
from service.store import Store
from tests.api.test_api import _error, _events, _items_body
from tests.conftest import topic_items
from tests.fixtures.pg_server import PostgresServer, running_server, unavailable_reason

ANSWER_WITHIN_S = 2.0
REFUSED_WITHIN_S = 5.0
ITEMS = [f"astronomy-{n:02d}" for n in range(6)]


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with running_server() as server:
        yield server


def _post(client: TestClient, user: str) -> tuple[int, float]:
    started = time.monotonic()
    response = client.post("/v1/events", json={"events": _events(user, ITEMS)})
    took = time.monotonic() - started
    if response.status_code == 503:
        _error(response, 503, "store_unavailable")
        assert response.headers["Retry-After"] == "1"
    return response.status_code, took


def test_an_outage_is_a_quick_503_and_loses_nothing_acknowledged(server, tmp_path):
    settings = Settings(
        database_url=server.url,
        data_dir=tmp_path / "data",
        index_dir=tmp_path / "index",
        embed_model="hashing",
    )
    with TestClient(create_app(settings)) as client:
        assert client.put("/v1/items", json=_items_body(topic_items())).status_code == 200
        acknowledged = [f"before-{n}" for n in range(5)]
        assert all(_post(client, user)[0] == 200 for user in acknowledged)
        assert client.get("/ready").json()["checks"]["store"] == "ok"
        import psycopg  # the postgres extra: the server fixture skipped without it

        with psycopg.connect(server.url) as conn:  # which instance holds which connection
            names = {
                row[0] for row in conn.execute("SELECT application_name FROM pg_stat_activity")
            }
        assert any(name.startswith("iprof ") and str(os.getpid()) in name for name in names)

        server.stop("immediate")  # no shutdown checkpoint: the commits must be in the WAL
        for user in ("during-0", "during-1", "during-2"):
            status, took = _post(client, user)
            assert status == 503 and took < ANSWER_WITHIN_S, (status, took)
        started = time.monotonic()
        ready = client.get("/ready")
        assert ready.status_code == 503 and "unavailable" in ready.json()["checks"]["store"]
        assert time.monotonic() - started < ANSWER_WITHIN_S
        _error(client.get("/v1/users/before-0/profile"), 503, "store_unavailable")

        server.start()
        back = time.monotonic()
        attempt = 0
        while _post(client, f"after-{attempt}")[0] != 200:
            attempt += 1
            assert time.monotonic() - back < ANSWER_WITHIN_S, "not answering after the return"
        recovered = f"after-{attempt}"
        assert client.get("/v1/users/before-0/profile").status_code == 200
        metrics = client.get("/metrics").text
        refused = re.search(r'iprof_store_unavailable_total\{why="timeout"\} (\S+)', metrics)
        assert refused and float(refused.group(1)) >= 3  # the three writes, at least
        assert 'iprof_store_connections{state="open"}' in metrics

    store = Store(server.url)
    try:
        for user in [*acknowledged, recovered]:
            assert [e.item_id for e in store.events.of_user(user)] == ITEMS, user
        for user in ("during-0", "during-1", "during-2"):
            assert store.events.of_user(user) == [], f"{user}: refused, yet stored"
    finally:
        store.close()


def _serve(tmp_path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`iprof serve` with these IPROF_* variables: its exit, and how long it took."""
    iprof = str(Path(sys.executable).with_name("iprof"))
    environment = {**os.environ, "IPROF_DATA_DIR": str(tmp_path / "data"), **env}
    started = time.monotonic()
    done = subprocess.run(
        [iprof, "serve", "--port", "0"], env=environment, capture_output=True, text=True, timeout=60
    )
    return done, time.monotonic() - started


def _one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_a_required_postgresql_without_its_url_refuses_to_start(tmp_path):
    done, _ = _serve(tmp_path, IPROF_STORE="postgresql")
    _one_line_error(done, "IPROF_STORE=postgresql", "IPROF_DATABASE_URL")
    assert not (tmp_path / "data").exists()  # no local SQLite file was made instead


def test_a_wrong_database_or_a_refused_connection_is_one_line_within_5_s(server, tmp_path):
    missing = server.url.rsplit("/", 1)[0] + "/nosuchdb"
    done, took = _serve(tmp_path, IPROF_DATABASE_URL=missing)
    _one_line_error(done, "nosuchdb", "does not exist")
    assert took < REFUSED_WITHIN_S
    server.stop()
    done, took = _serve(tmp_path, IPROF_DATABASE_URL=server.url)
    _one_line_error(done, "cannot open PostgreSQL", "127.0.0.1")
    assert took < REFUSED_WITHIN_S
