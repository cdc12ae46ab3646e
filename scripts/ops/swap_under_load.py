"""Rebuild the item index again and again while readers query recommendations; count failures.

Usage:
    python scripts/ops/swap_under_load.py [--rebuilds 10] [--readers 4] [--out FILE.json]

In-process (the whole HTTP stack, lifespan running) with the bundled demo catalog and events and
the real MiniLM embedder (``--hashing`` for the fast fake). Every query must answer 200 while the
index is rebuilt and swapped underneath it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from fastapi.testclient import TestClient

from service.app.container import build_services
from service.app.factory import create_app
from service.core.config import Settings
from service.ingest.demo import demo_catalog
from service.ingest.demo_events import demo_events


def prepare(folder: Path, embed_model: str | None) -> Settings:
    settings = Settings(
        data_dir=folder / "data",
        index_dir=folder / "index",
        embed_model=embed_model,
        rate_limit_per_second=0,
    )
    services = build_services(settings, load_item_index=False)
    services.store.items.upsert(demo_catalog())
    services.store.events.add(demo_events())
    services.index.rebuild(services.store)
    services.close()
    return settings


def run(settings: Settings, rebuilds: int, readers: int) -> dict:
    statuses: Counter[int] = Counter()
    stop = threading.Event()
    with TestClient(create_app(settings)) as client:
        users = ["alice", "frank", "judy", "ivan"]

        def read(number: int) -> None:
            while not stop.is_set():
                user = users[number % len(users)]
                statuses[client.get(f"/v1/users/{user}/recommendations?k=10").status_code] += 1

        threads = [threading.Thread(target=read, args=(n,)) for n in range(readers)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        rebuild_statuses = [client.post("/v1/index/rebuild").status_code for _ in range(rebuilds)]
        stop.set()
        for thread in threads:
            thread.join()
    return {
        "rebuilds": rebuilds,
        "rebuilds_ok": rebuild_statuses.count(200),
        "queries": sum(statuses.values()),
        "queries_failed": sum(n for status, n in statuses.items() if status != 200),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Index rebuilds under query load.")
    parser.add_argument("--rebuilds", type=int, default=10)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--hashing", action="store_true", help="fake embedder (fast)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="iprof-swap-") as folder:
        settings = prepare(Path(folder), "hashing" if args.hashing else None)
        report = run(settings, args.rebuilds, args.readers)
    for key, value in report.items():
        print(f"{key:16} {value}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    ok = report["queries_failed"] == 0 and report["rebuilds_ok"] == report["rebuilds"]
    print("PASS: no query failed during the swaps" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
