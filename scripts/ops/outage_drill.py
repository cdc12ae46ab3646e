"""PostgreSQL stopped under a writing client, and started again: what the client gets.

Usage:
    python scripts/ops/outage_drill.py [--outage-s 10,40] [--mode immediate|fast]

Starts a throwaway PostgreSQL (tests/fixtures/pg_server.py), serves the app in-process on it
(the hashing embedder; the HTTP stack through Starlette's test client), and keeps posting
event batches, one user each, one after the other. For each outage length it stops the server
(``immediate``: as a crash; ``fast``: as an operator), keeps posting for that long, starts it
again and posts until a batch is accepted. Prints per outage: the answers during it (status
and latency: median, max), ``/ready`` during it, how long after the server was back the first
batch was accepted, whether every acknowledged batch is stored and no refused one is.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from fastapi.testclient import TestClient

from service.app.factory import create_app
from service.core.config import Settings
from service.store import Store
from tests.api.test_api import _events, _items_body
from tests.conftest import topic_items
from tests.fixtures.pg_server import PostgresServer, running_server

ITEMS = [f"astronomy-{n:02d}" for n in range(6)]


class Writer:
    """Posts one user's batch at a time, remembering which were acknowledged and refused."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.sent = 0
        self.acknowledged: list[str] = []
        self.refused: list[str] = []

    def post(self) -> tuple[int, float, str | None]:
        user = f"user-{self.sent}"
        self.sent += 1
        started = time.monotonic()
        response = self.client.post("/v1/events", json={"events": _events(user, ITEMS)})
        took = time.monotonic() - started
        (self.acknowledged if response.status_code == 200 else self.refused).append(user)
        return response.status_code, took, response.headers.get("Retry-After")


def drill(server: PostgresServer, writer: Writer, outage_s: float, mode: str) -> dict:
    for _ in range(3):
        writer.post()
    server.stop(mode)
    stopped = time.monotonic()
    answers = []
    while time.monotonic() - stopped < outage_s:
        answers.append(writer.post())
    ready_started = time.monotonic()
    ready = writer.client.get("/ready")
    ready_took = time.monotonic() - ready_started
    server.start()
    back = time.monotonic()
    while writer.post()[0] != 200:
        pass
    latencies = [took for _, took, _ in answers]
    return {
        "outage_s": outage_s,
        "answers": dict(Counter(status for status, _, _ in answers)),
        "retry_after": sorted({retry for _, _, retry in answers if retry}),
        "median_s": statistics.median(latencies) if latencies else 0.0,
        "max_s": max(latencies, default=0.0),
        "ready": f"{ready.status_code} ({ready_took:.2f} s): {ready.json()['checks']['store']}",
        "accepted_after_return_s": time.monotonic() - back,
    }


def check_stored(url: str, writer: Writer) -> tuple[int, int]:
    """(acknowledged batches missing, refused batches stored)."""
    store = Store(url)
    try:
        missing = sum(1 for u in writer.acknowledged if len(store.events.of_user(u)) != len(ITEMS))
        stored = sum(1 for u in writer.refused if store.events.of_user(u))
    finally:
        store.close()
    return missing, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage-s", default="10,40")
    parser.add_argument("--mode", choices=("immediate", "fast"), default="immediate")
    args = parser.parse_args()
    outages = [float(x) for x in args.outage_s.split(",")]
    with running_server() as server, tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            database_url=server.url,
            data_dir=Path(folder) / "data",
            index_dir=Path(folder) / "index",
            embed_model="hashing",
        )
        with TestClient(create_app(settings)) as client:
            client.put("/v1/items", json=_items_body(topic_items()))
            writer = Writer(client)
            results = [drill(server, writer, outage, args.mode) for outage in outages]
        missing, stored = check_stored(server.url, writer)
    print(
        f"\nstopped with -m {args.mode}; {writer.sent} batches sent, "
        f"{len(writer.acknowledged)} acknowledged, {len(writer.refused)} refused"
    )
    print(
        "| outage | answers during it | Retry-After | latency median / max | /ready during it"
        " | first batch accepted after the return |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['outage_s']:g} s | {r['answers']} | {', '.join(r['retry_after'])} | "
            f"{r['median_s']:.2f} / {r['max_s']:.2f} s | {r['ready']} | "
            f"{r['accepted_after_return_s']:.2f} s |"
        )
    print(f"acknowledged batches missing: {missing}; refused batches stored: {stored}")


if __name__ == "__main__":
    main()
