"""Kill the server with SIGKILL while it ingests events, restart it, and check that nothing it
acknowledged was lost or stored twice.

Usage:
    python scripts/ops/crash_test.py [--kills 20] [--seed 1] [--out FILE.json]
    python scripts/ops/crash_test.py --store postgresql     # the same on a throwaway PostgreSQL
    python scripts/ops/crash_test.py --store postgresql://iprof@db/iprof --port 8000  # a real one

Each round starts `uvicorn service.app.factory:create_app` on a loopback port with a fresh data
directory shared by all rounds, streams batches of events (unique ids) from a client thread,
kills the server at a random moment (0.1-1.2 s in), and restarts it. Every batch answered with
2xx is recorded. At the end the database itself is read: every acknowledged event must be there
exactly once; batches whose answer never came may or may not be there, never twice. Acknowledged
batches are then posted again and must all count as duplicates. The server uses the hashing
embedder: durability is the store's business, and restarts stay fast. With ``--store
postgresql`` the servers keep their events in a throwaway PostgreSQL server
(tests/fixtures/pg_server.py) instead, which stays up: what is killed is the service.

Against a deployment's database (``--store postgresql://...``) the run touches only its own
users and events (ids tagged with the run, ``crash-TAG-...``), checks only those, and deletes
its users at the end; ``--port`` puts its servers on a port of your choosing rather than a free
one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from tests.fixtures.pg_server import STORE_HELP, free_port, store_option, store_url

BATCH = 25
# This run's users and events are named with it, so a shared database's other rows are left
# out of the checks and alone.
RUN = f"crash-{secrets.token_hex(3)}"


@dataclass
class Outcome:
    kills: int = 0
    batches_sent: int = 0
    batches_acknowledged: int = 0
    acknowledged_events: int = 0
    acknowledged_events_lost: int = 0
    events_stored_twice: int = 0
    unacknowledged_batches_stored: int = 0
    resent_batches_counted_as_new: int = 0
    acknowledged: list[int] = field(default_factory=list, repr=False)


@contextmanager
def running_server(data: Path, port: int) -> Iterator[subprocess.Popen]:
    env = {
        **os.environ,
        "IPROF_DATA_DIR": str(data / "data"),
        "IPROF_INDEX_DIR": str(data / "index"),
        "IPROF_EMBED_MODEL": "hashing",
        "IPROF_RATE_LIMIT_PER_SECOND": "0",
        "HF_HUB_OFFLINE": "1",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "service.app.factory:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
    ]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_healthy(port, server)
        yield server
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def wait_until_healthy(port: int, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited: {server.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not become healthy")


def batch_body(number: int) -> dict:
    return {
        "events": [
            {
                "event_id": f"{RUN}-b{number}-{i}",
                "user_id": f"{RUN}-u{number % 7}",
                "item_id": f"item-{i}",
                "type": "view",
                "ts": 1_700_000_000 + number * BATCH + i,
            }
            for i in range(BATCH)
        ]
    }


def stream_until_killed(port: int, first: int, outcome: Outcome, stop: threading.Event) -> int:
    """Post batches one after another until the server dies; return the next batch number."""
    number = first
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        while not stop.is_set():
            outcome.batches_sent += 1
            try:
                response = client.post("/v1/events", json=batch_body(number))
            except httpx.HTTPError:
                return number + 1  # no answer: not acknowledged
            if 200 <= response.status_code < 300:
                outcome.acknowledged.append(number)
            number += 1
    return number


def one_round(
    data: Path, first: int, rng: random.Random, outcome: Outcome, port: int | None
) -> int:
    port = port or free_port()
    with running_server(data, port) as server:
        stop, result = threading.Event(), dict[str, int]()
        sender = threading.Thread(
            target=lambda: result.setdefault(
                "next", stream_until_killed(port, first, outcome, stop)
            )
        )
        sender.start()
        time.sleep(rng.uniform(0.1, 1.2))
        os.kill(server.pid, signal.SIGKILL)
        outcome.kills += 1
        stop.set()
        sender.join()
    return int(result["next"])


def check_database(data: Path, outcome: Outcome) -> None:
    from service.store import Store

    store = Store(os.environ.get("IPROF_DATABASE_URL") or data / "data" / "iprof.sqlite3")
    ours = f"WHERE user_id LIKE '{RUN}-%'"  # RUN is hex of our own making: safe to inline
    counts = dict(
        store.engine.tuples(
            f"SELECT event_id, COUNT(*) FROM events {ours} GROUP BY user_id, event_id"
        )
    )
    twice = store.engine.tuples(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM events {ours} GROUP BY user_id, event_id"
        " HAVING COUNT(*) > 1) AS repeated"
    )[0][0]
    store.close()
    acknowledged = set(outcome.acknowledged)
    expected = [f"{RUN}-b{n}-{i}" for n in acknowledged for i in range(BATCH)]
    outcome.acknowledged_events = len(expected)
    outcome.acknowledged_events_lost = sum(1 for e in expected if e not in counts)
    outcome.events_stored_twice = int(twice)
    stored_batches = {int(e.removeprefix(f"{RUN}-b").split("-")[0]) for e in counts}
    outcome.unacknowledged_batches_stored = len(stored_batches - acknowledged)
    outcome.batches_acknowledged = len(acknowledged)


def resend_acknowledged(data: Path, outcome: Outcome, port: int | None) -> None:
    """Post every acknowledged batch again (all must be duplicates), then delete this run's
    users, which leaves a shared database as it was."""
    port = port or free_port()
    with running_server(data, port), httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for number in outcome.acknowledged:
            answer = client.post("/v1/events", json=batch_body(number)).json()
            outcome.resent_batches_counted_as_new += answer["accepted"] > 0
        for user in range(7):
            client.delete(f"/v1/users/{RUN}-u{user}")


def run(kills: int, seed: int, port: int | None = None) -> Outcome:
    rng, outcome = random.Random(seed), Outcome()
    with tempfile.TemporaryDirectory(prefix="iprof-crash-") as folder:
        data, next_batch = Path(folder), 0
        for _ in range(kills):
            next_batch = one_round(data, next_batch, rng, outcome, port)
        check_database(data, outcome)
        resend_acknowledged(data, outcome, port)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SIGKILL the server while it ingests events.")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--store", type=store_option, default="sqlite", help=STORE_HELP)
    parser.add_argument("--port", type=int, help="the servers' port (default: a free one)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with store_url(args.store) as url:
        if url is None:
            outcome = run(args.kills, args.seed, args.port)
        else:
            os.environ["IPROF_DATABASE_URL"] = url  # the servers inherit it
            try:
                outcome = run(args.kills, args.seed, args.port)
            finally:
                del os.environ["IPROF_DATABASE_URL"]
    report = {k: v for k, v in asdict(outcome).items() if k != "acknowledged"}
    report["seconds"] = round(time.monotonic() - started, 1)
    for key, value in report.items():
        print(f"{key:32} {value}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    safe = (
        outcome.acknowledged_events_lost == 0
        and outcome.events_stored_twice == 0
        and outcome.resent_batches_counted_as_new == 0
        and outcome.batches_acknowledged > 0
    )
    print("PASS: nothing acknowledged was lost or duplicated" if safe else "FAIL")
    return 0 if safe else 1


if __name__ == "__main__":
    sys.exit(main())
