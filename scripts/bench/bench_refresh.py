"""Profile refresh throughput: extractive profiles plus embeddings for many users, against the
raw encode rate of the very texts those profiles embed, in the same run.

Usage:
    python scripts/bench/bench_refresh.py                    # 500 synthetic users, bundled MiniLM
    python scripts/bench/bench_refresh.py --users 2000 --repeats 3
    python scripts/bench/bench_refresh.py --engine local,ray # the same users on both engines
    python scripts/bench/bench_refresh.py --engine local,ray --store postgresql  # throwaway PG
    python scripts/bench/bench_refresh.py --engine local,ray --users 100,300,1000,3000  # crossover

The refresh is `Profiler.refresh_users(force=True)` (what `iprof refresh --all --force` runs):
read events, cut windows, summarize, embed, score drift, store. The baseline is one
`encode` call on the texts the refresh embeds (each window's summary and interest labels),
collected beforehand. Medians of --repeats runs, alternating.

With ``--engine ray`` the same refresh runs as `iprof refresh --all --force --engine ray` does
(`service/app/ray_refresh.py`) on a local Ray of 2 CPUs started once beforehand: each run starts
its actors, which load the embedder, so a run's time includes that; the fixed cost of a job is
measured on its own (a refresh of one user).

With several ``--users`` counts, each engine's times are fitted as ``fixed + windows / rate``
(least squares over the counts). Ray starts to beat local where its higher rate has paid for its
higher fixed cost: at ``(fixed_ray - fixed_local) / (1 / rate_local - 1 / rate_ray)`` windows,
or never, where Ray's marginal rate is the lower one.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
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
    parser.add_argument("--users", default="500", help="a count, or counts: 100,300,1000")
    parser.add_argument("--events-per-user", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--embedder", default=None, help="IPROF_EMBED_MODEL (default: MiniLM)")
    parser.add_argument("--engine", default="local", help="local, ray, or local,ray")
    parser.add_argument("--store", type=store_option, default="sqlite", help=STORE_HELP)
    args = parser.parse_args(argv)
    engines = [name.strip() for name in args.engine.split(",") if name.strip()]
    if not set(engines) <= {"local", "ray"} or not engines:
        parser.error("--engine takes local, ray or local,ray")
    try:
        counts = sorted({int(count) for count in args.users.split(",")})
    except ValueError:
        parser.error("--users takes whole numbers, e.g. 500 or 100,300,1000")
    if counts[0] < 1:
        parser.error("--users counts must be at least 1")
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
        synthetic = synthetic_events(counts[-1], CATALOG, args.events_per_user)
        services.store.events.add(list(synthetic))
        everyone = services.store.events.user_ids()
        rows: list[tuple[int, int, dict[str, float]]] = []
        with contextlib.ExitStack() as stack:
            engine_runs = {name: _engine_run(name, services, settings, stack) for name in engines}
            for count in counts:
                rows.append(_measure(services, everyone[:count], engine_runs, args.repeats))
                print(f"store {args.store}, {services.embedder.model_id}\n")
                _print_table(rows[-1][2], count, rows[-1][1])
            if "ray" in engines:
                fixed = _ray_job_cost(settings, everyone[:1])
                print(f"\nRay job of one user (actors start, embedder loads): {fixed:.1f} s")
        if len(rows) > 1:
            _print_crossover(rows, engines)
        services.close()
    return 0


def _measure(  # type: ignore[no-untyped-def]
    services, users: list[str], engine_runs: dict[str, Callable[[list[str]], int]], repeats: int
) -> tuple[int, int, dict[str, float]]:
    """(users, windows, median seconds of each run) for a refresh of ``users`` on every engine,
    with the raw encode of what they embed alongside."""
    texts = _profile_texts(services, users)
    runs: dict[str, Callable[[], object]] = {"encode": lambda: services.embedder.encode(texts)}
    runs.update({name: partial(run, users) for name, run in engine_runs.items()})
    seconds, windows = _time_runs(runs, repeats)
    print(
        f"\n{len(users)} users, {windows} windows, {len(texts)} texts embedded; median of {repeats}"
    )
    return len(users), windows, seconds


def _engine_run(  # type: ignore[no-untyped-def]
    engine: str, services, settings: Settings, stack: contextlib.ExitStack
) -> Callable[[list[str]], int]:
    """A forced refresh of the users given, on the engine; it returns the windows generated."""
    if engine == "local":
        return lambda users: services.profiler.refresh_users(users, force=True).windows_generated
    import ray

    from service.app.ray_refresh import refresh_on_ray

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    stack.callback(ray.shutdown)
    print(f"local Ray started in {time.perf_counter() - started:.1f} s (not in the table)")
    return lambda users: refresh_on_ray(settings, users, force=True).windows_generated


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


def _print_table(seconds: dict[str, float], users: int, windows: int) -> None:
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


def _print_crossover(rows: list[tuple[int, int, dict[str, float]]], engines: list[str]) -> None:
    """Each engine's seconds fitted as fixed + windows / rate, and where Ray overtakes local."""
    windows = np.array([float(row[1]) for row in rows])
    fits: dict[str, tuple[float, float]] = {}
    print("\n| engine | fixed s (fit) | windows/s past it (fit) |")
    print("|---|---:|---:|")
    for engine in engines:
        took = np.array([row[2][engine] for row in rows])
        per_window, fixed = np.polyfit(windows, took, 1)
        fits[engine] = (float(fixed), float(per_window))
        rate = f"{1 / per_window:,.1f}" if per_window > 0 else "-"
        print(f"| {engine} | {fixed:.2f} | {rate} |")
    if {"local", "ray"} <= set(fits):
        print(f"\nRay beats local here {_crossover(fits['local'], fits['ray'])}")


def _crossover(local: tuple[float, float], ray: tuple[float, float]) -> str:
    """From how many windows on, given (fixed seconds, seconds a window) of each engine."""
    if min(local[1], ray[1]) <= 0:  # noise at counts too close together
        return "(cannot tell: a fitted cost per window is not positive; spread --users wider)"
    extra_fixed, saved_per_window = ray[0] - local[0], local[1] - ray[1]
    if saved_per_window <= 0:
        return "never: each window costs more on Ray than in this process"
    return f"from about {max(0.0, extra_fixed / saved_per_window):,.0f} windows on"


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
