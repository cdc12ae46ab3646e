"""Two `iprof serve` instances over one PostgreSQL: one truth for events, profiles and the index.

Each instance has a data folder of its own; they share the database and the index folder (a
build is published by swapping the shared folder's CURRENT, which every instance follows).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.test_api import _events, _items_body
from tests.conftest import topic_items
from tests.fixtures.pg_server import free_port
from tests.unit.app.test_cli import _get

pytestmark = pytest.mark.slow


@pytest.fixture
def two_instances(pg_url: str, tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    iprof = str(Path(sys.executable).with_name("iprof"))
    servers, clients = [], []
    try:
        for name in ("a", "b"):
            port = free_port()
            env = {
                **os.environ,
                "IPROF_DATABASE_URL": pg_url,
                "IPROF_DATA_DIR": str(tmp_path / f"data-{name}"),
                "IPROF_INDEX_DIR": str(tmp_path / "shared-index"),
                "IPROF_EMBED_MODEL": "hashing",
                "IPROF_WINDOW": "6e",
            }
            log = (tmp_path / f"serve-{name}.log").open("w")
            command = [iprof, "serve", "--port", str(port), "--no-access-log"]
            servers.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
            clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
        for client in clients:
            deadline = time.monotonic() + 120
            while _get(f"{client.base_url}/health") != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _get(f"{client.base_url}/health") == 200, (tmp_path / "serve-a.log").read_text()
        yield clients[0], clients[1]
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.terminate()
            server.wait(timeout=60)


def _build_served_by(client: httpx.Client, build_id: str, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        checks = client.get("/ready").json()["checks"]
        if checks["index_build"] == build_id:
            return checks["store_engine"] == "postgresql"
        time.sleep(0.5)
    return False


def test_two_instances_agree_on_events_profiles_and_the_index(two_instances):
    a, b = two_instances
    assert a.put("/v1/items", json=_items_body(topic_items())).json() == {"upserted": 20}
    first = a.post("/v1/index/rebuild").json()["build_id"]
    assert _build_served_by(b, first)  # built by A, picked up by B

    both = _events(
        "u", [f"astronomy-{n:02d}" for n in range(6)] + [f"baking-{n:02d}" for n in range(6)]
    )
    astronomy, baking = both[:6], both[6:]
    assert a.post("/v1/events", json={"events": astronomy}).json()["accepted"] == 6
    assert b.post("/v1/events", json={"events": baking}).json()["accepted"] == 6
    retried = b.post("/v1/events", json={"events": astronomy + baking}).json()
    assert (retried["accepted"], retried["duplicates"]) == (0, 12)  # counted once, either side

    answer = a.get("/v1/users/u/profiles")
    assert answer.status_code == 200, answer.text
    made_by_a = answer.json()["profiles"]
    assert [p["window"]["events"] for p in made_by_a] == [6, 6]
    read_by_b = b.get("/v1/users/u/profiles").json()["profiles"]
    assert read_by_b == made_by_a  # same created_at: B read A's profiles, made none of its own
    assert b.get("/v1/users/u/profile").json() == made_by_a[-1]

    extra = [{"item_id": "new-1", "title": "Comet hunting", "categories": ["Astronomy"]}]
    assert b.put("/v1/items", json={"items": extra}).json() == {"upserted": 1}
    second = b.post("/v1/index/rebuild").json()
    assert second["build_id"] != first and second["count"] == 21
    assert _build_served_by(a, second["build_id"])  # built by B, picked up by A
    assert a.get("/v1/users/u/recommendations").status_code == 200

    assert b.delete("/v1/users/u").status_code == 204
    assert a.get("/v1/users/u/profile").status_code == 404
