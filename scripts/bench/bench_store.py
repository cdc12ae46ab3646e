"""The store's profile write rate, SQLite against PostgreSQL, in one run: what bounds a refresh
cluster once the LLM work is spread over enough GPUs.

Usage:
    python scripts/bench/bench_store.py                     # 64 rounds of 64 users x 3 windows
    python scripts/bench/bench_store.py --rounds 200 --writers 4

Each round is what one refresh round writes (`Store.profiles.save`: 64 users' new profiles,
their kept windows and profile states, one transaction). ``--writers`` threads write at once,
each through its own store (as separate actors or instances do); SQLite serialises them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from service.core.records import Event, Interest, Profile, WindowInfo
from service.store import ProfileState, ProfileWrite, Store

USERS_PER_ROUND, WINDOWS, DIMENSION = 64, 3, 384


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=64, help="rounds per writer")
    parser.add_argument("--writers", type=int, default=2)
    args = parser.parse_args(argv)
    from tests.fixtures.pg_server import postgres_server

    with tempfile.TemporaryDirectory() as work, postgres_server() as url:
        targets: dict[str, Path | str] = {"sqlite": Path(work) / "bench.sqlite3", "postgresql": url}
        print(
            f"\n{args.writers} writers x {args.rounds} rounds of {USERS_PER_ROUND} users x "
            f"{WINDOWS} windows ({DIMENSION}-d embeddings)\n"
        )
        print("| store | seconds | windows/s | rounds/s |")
        print("|---|---:|---:|---:|")
        for name, target in targets.items():
            took = _run(target, args.writers, args.rounds)
            windows = args.writers * args.rounds * USERS_PER_ROUND * WINDOWS
            rounds = args.writers * args.rounds
            print(f"| {name} | {took:.2f} | {windows / took:,.0f} | {rounds / took:,.1f} |")
    return 0


def _run(target: Path | str, writers: int, rounds: int) -> float:
    stores = [Store(target) for _ in range(writers)]
    users = [f"w{w}-u{n}" for w in range(writers) for n in range(rounds * USERS_PER_ROUND)]
    stores[0].events.add([Event("e", user, "i", "view", 1.0) for user in users])
    changes = stores[0].items.changes()

    def write(number: int) -> None:
        store = stores[number]
        for round_ in range(rounds):
            start = round_ * USERS_PER_ROUND
            batch = users[number * rounds * USERS_PER_ROUND :][start : start + USERS_PER_ROUND]
            store.profiles.save([_write(user, changes) for user in batch])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - started
    for store in stores:
        store.close()
    return took


def _write(user: str, changes: int) -> ProfileWrite:
    rng = np.random.default_rng(len(user))
    profiles = [
        Profile(
            user_id=user,
            window=WindowInfo(index, index * 10.0, index * 10.0 + 9, 20, True),
            summary="Mostly science fiction and space documentaries, lately baking.",
            interests=tuple(Interest(f"topic {k}", 0.2, (f"i{k}",)) for k in range(5)),
            embedding=rng.standard_normal(DIMENSION).astype(np.float32),
            provenance={"summarizer": "extractive", "events_hash": "x" * 16},
            source_key="k" * 16,
            created_at=1.0,
        )
        for index in range(WINDOWS)
    ]
    return ProfileWrite(
        user, profiles, list(range(WINDOWS)), ProfileState("1:1", "m", None), changes
    )


if __name__ == "__main__":
    sys.exit(main())
