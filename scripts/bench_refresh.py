"""Profile refresh throughput: extractive profiles plus embeddings for many users, against the
raw encode rate of the very texts those profiles embed, in the same run.

Usage:
    python scripts/bench_refresh.py                    # 500 synthetic users, bundled MiniLM
    python scripts/bench_refresh.py --users 2000 --repeats 3

The refresh is `Profiler.refresh_users(force=True)` (what `iprof refresh --all --force` runs):
read events, cut windows, summarize, embed, score drift, store. The baseline is one
`encode` call on the texts the refresh embeds (each window's summary and interest labels),
collected beforehand. Medians of --repeats runs, alternating.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from service.app.container import build_services
from service.core.config import Settings
from service.evaluation.synthetic import synthetic_events, synthetic_items
from service.summarizers.extractive import ExtractiveSummarizer

CATALOG = 20_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--events-per-user", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--embedder", default=None, help="IPROF_EMBED_MODEL (default: MiniLM)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-refresh-") as work:
        settings = Settings(
            data_dir=Path(work), index_dir=Path(work) / "index", embed_model=args.embedder
        )
        services = build_services(settings, load_item_index=False)
        for chunk in synthetic_items(CATALOG):
            services.store.upsert_items(chunk)
        services.store.add_events(list(synthetic_events(args.users, CATALOG, args.events_per_user)))
        users = services.store.user_ids()
        texts = _profile_texts(services, users)
        encode_s, refresh_s = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            services.embedder.encode(texts)
            encode_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            report = services.profiler.refresh_users(users, force=True)
            refresh_s.append(time.perf_counter() - started)
        encode, refresh = float(np.median(encode_s)), float(np.median(refresh_s))
        print(
            f"\n{len(users)} users, {report.windows_generated} windows, {len(texts)} texts "
            f"embedded, {services.embedder.model_id}; median of {args.repeats}\n"
        )
        print("| step | seconds | users/s | vs encode |")
        print("|---|---:|---:|---:|")
        rate = len(users) / encode
        print(f"| raw `encode` of the profile texts | {encode:.2f} | {rate:,.1f} | 1.00 |")
        print(
            f"| `refresh_users` (profiles + embeddings + drift + store) | {refresh:.2f} "
            f"| {len(users) / refresh:,.1f} | {encode / refresh:.2f} |"
        )
    return 0


def _profile_texts(services, users: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """What the refresh will embed: per window, its summary and its interest labels."""
    profiler = services.profiler
    assert isinstance(profiler.summarizer, ExtractiveSummarizer)
    texts: list[str] = []
    for user in users:
        events = services.store.user_events(user)
        for window in profiler._profiled_windows(user, events)[0]:
            summary = profiler.summarizer.summarize([window])[0]
            texts.append(summary.summary)
            texts.extend(interest.label for interest in summary.interests)
    return texts


if __name__ == "__main__":
    sys.exit(main())
