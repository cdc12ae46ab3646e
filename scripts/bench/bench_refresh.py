"""Profile refresh throughput: extractive profiles plus embeddings for many users, against the
raw encode rate of the very texts those profiles embed, in the same run.

Usage:
    python scripts/bench/bench_refresh.py                    # 500 synthetic users, bundled MiniLM
    python scripts/bench/bench_refresh.py --users 2000 --repeats 3
    python scripts/bench/bench_refresh.py --engine local,ray # the same users on both engines
    python scripts/bench/bench_refresh.py --engine local,ray --store postgresql  # throwaway PG

The refresh is `Profiler.refresh_users(force=True)` (what `iprof refresh --all --force` runs):
read events, cut windows, summarize, embed, score drift, store. The baseline is one
`encode` call on the texts the refresh embeds (each window's summary and interest labels),
collected beforehand. Medians of --repeats runs, alternating.

With ``--engine ray`` the same refresh runs as `iprof refresh --all --force --engine ray` does
(`service/app/ray_refresh.py`) on a local Ray of 2 CPUs started once beforehand: each run starts
its actors, which load the embedder, so a run's time includes that; the fixed cost of a job is
measured on its own (a refresh of one user).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from service.app.container import build_services
from service.core.config import Settings
from service.evaluation.synthetic import synthetic_events, synthetic_items
from service.summarizers.extractive import ExtractiveSummarizer
from tests.fixtures.pg_server import STORE_HELP, store_option, store_url

CATALOG = 20_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--events-per-user", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--embedder", default=None, help="IPROF_EMBED_MODEL (default: MiniLM)")
    parser.add_argument("--engine", default="local", help="local, ray, or local,ray")
    parser.add_argument("--store", type=store_option, default="sqlite", help=STORE_HELP)
    args = parser.parse_args(argv)
    engines = [name.strip() for name in args.engine.split(",") if name.strip()]
    if not set(engines) <= {"local", "ray"} or not engines:
        parser.error("--engine takes local, ray or local,ray")
    with tempfile.TemporaryDirectory(prefix="bench-refresh-") as work, store_url(args.store) as url:
        settings = Settings(
            data_dir=Path(work),
            index_dir=Path(work) / "index",
            embed_model=args.embedder,
            database_url=url,
        )
        services = build_services(settings, load_item_index=False)
        for chunk in synthetic_items(CATALOG):
            services.store.items.upsert(chunk)
        services.store.events.add(list(synthetic_events(args.users, CATALOG, args.events_per_user)))
        users = services.store.events.user_ids()
        texts = _profile_texts(services, users)
        runs = {"encode": lambda: services.embedder.encode(texts)}
        with contextlib.ExitStack() as stack:
            for engine in engines:
                runs[engine] = _engine_run(engine, services, settings, users, stack)
            seconds, windows = _time_runs(runs, args.repeats)
            fixed = _ray_job_cost(settings, users[:1]) if "ray" in engines else None
        print(
            f"\n{len(users)} users, {windows} windows, {len(texts)} texts embedded, "
            f"{services.embedder.model_id}, store {args.store}; median of {args.repeats}\n"
        )
        _print_table(seconds, len(users), windows, fixed)
        services.close()
    return 0


    # type: ignore[no-untyped-def]
def _engine_run(engine, services, settings, users, stack) -> Callable[[], int]:
    """A refresh of every user, forced, on the engine; it returns the windows generated."""
    if engine == "local":
        return lambda: services.profiler.refresh_users(users, force=True).windows_generated
    import ray

    from service.app.ray_refresh import refresh_on_ray

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    stack.callback(ray.shutdown)
    print(f"local Ray started in {time.perf_counter() - started:.1f} s (not in the table)")
    return lambda: refresh_on_ray(settings, users, force=True).windows_generated


    # type: ignore[type-arg]
def _time_runs(runs: dict[str, Callable[[], object]], repeats: int) -> tuple[dict, int]:
    """Seconds of each run, alternating, and the windows a refresh generated."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    windows = 0
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            result = run()
            times[name].append(time.perf_counter() - started)
            if name != "encode":
                assert windows in (0, result), f"{name} generated {result} windows, not {windows}"
                windows = int(result)  # type: ignore[call-overload]
    return {name: float(np.median(values)) for name, values in times.items()}, windows


def _ray_job_cost(settings: Settings, one_user: list[str]) -> float:
    """A Ray refresh of one user: starting the actor pool (each actor loads the embedder)
    and scheduling the dataset, nearly all of it fixed cost."""
    from service.app.ray_refresh import refresh_on_ray

    started = time.perf_counter()
    refresh_on_ray(settings, one_user, force=True, actors=2)
    return time.perf_counter() - started


def _print_table(seconds: dict[str, float], users: int, windows: int, fixed: float | None) -> None:
    labels = {
        "encode": "raw `encode` of the profile texts",
        "local": "`refresh_users` (profiles + embeddings + drift + store), this process",
        "ray": "`--engine ray` (2 actors on a local Ray, actor start included)",
    }
    print("| step | seconds | users/s | windows/s | vs encode | vs local |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, took in seconds.items():
        versus_local = f"{seconds['local'] / took:.2f}" if "local" in seconds else "-"
        rate = "-" if name == "encode" else f"{windows / took:,.1f}"
        print(
            f"| {labels[name]} | {took:.2f} | {users / took:,.1f} | {rate} "
            f"| {seconds['encode'] / took:.2f} | {versus_local} |"
        )
    if fixed is not None:
        print(f"\nRay job of one user (fixed cost: actors start, embedder loads): {fixed:.1f} s")


def _profile_texts(services, users: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """What the refresh will embed: per window, its summary and its interest labels."""
    profiler = services.profiler
    assert isinstance(profiler.summarizer, ExtractiveSummarizer)
    texts: list[str] = []
    for user in users:
        events = services.store.events.of_user(user)
        for window in profiler._profiled_windows(user, events)[0]:
            summary = profiler.summarizer.summarize([window])[0]
            texts.append(summary.summary)
            texts.extend(interest.label for interest in summary.interests)
    return texts


if __name__ == "__main__":
    sys.exit(main())
