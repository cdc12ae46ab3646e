"""The API under load: GET /recommendations at rising request rates, p50/p99 and errors at each.

Usage:
    python scripts/bench/load_test.py                     # 100k items, 10k users, 60 s/rate
    python scripts/bench/load_test.py --items 2000 --users 200 --rates 20,50 --duration 5  # quick
    python scripts/bench/load_test.py --profile 500       # where a request's time goes
    python scripts/bench/load_test.py --rates 200 --compare ../before   # and an older checkout's
    python scripts/bench/load_test.py --rates 200 --stores sqlite,postgresql  # 2 instances on PG

The first run prepares a synthetic catalog and event log (service/evaluation/synthetic.py) in
--work, builds the index and profiles every user (as `iprof refresh --all` would); later runs
reuse them (--rebuild-index rebuilds the index). Then it starts `iprof serve` on loopback,
warms it up (--warmup seconds at 50 req/s, not counted) and drives it open-loop: request i is
sent at start + i/rate whatever the earlier ones are doing, and its latency counts from then, so a
slow server cannot slow the generator down and hide its own queueing (coordinated omission).
Requests go over --connections keep-alive connections opened first, as that many clients
would hold them. Each rate is bounded in requests (rate x duration) and in time. Users are
drawn uniformly, so most requests are for a user not asked for before. Each row also gives
the server's CPU time per request and each worker's share of it (from /proc).

With ``--stores sqlite,postgresql`` the same rates run, after SQLite's one `iprof serve` of
--workers processes, against two `iprof serve` instances (one process each, so the same
cores) over one throwaway PostgreSQL server (tests/fixtures/pg_server.py) and one index folder, the
requests alternating between the two, as a load balancer would send them. The PostgreSQL
store is prepared the same way, from the same synthetic data.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import os
import pstats
import random
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from scripts.ops.server_process import cpu_seconds, start_server, stop_server, worker_pids
from service.app.container import Services, build_services
from service.core.config import Settings
from service.evaluation.synthetic import synthetic_events, synthetic_items

T = TypeVar("T")
REQUEST_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 64
WARMUP_RATE = 50.0


def prepare(
    settings: Settings, items: int, users: int, events_per_user: int, rebuild_index: bool
) -> Services:
    """Catalog, events, index, profiles and candidate lists in the work folder, as
    `iprof refresh --all` leaves them; what is there already is kept (``rebuild_index``: the
    index anyway, with the index choices of this version)."""
    services = build_services(settings, load_item_index=False)
    store = services.store
    prepared = store.items.count() == items and store.events.count_users() == users
    if prepared and rebuild_index:
        services.index.rebuild(store, progress=True)
    elif not prepared:
        for chunk in tqdm(synthetic_items(items), desc="items", unit="chunk"):
            store.items.upsert(chunk)
        events = list(synthetic_events(users, items, events_per_user))
        for start in tqdm(range(0, len(events), 5_000), desc="events", unit="chunk"):
            store.events.add(events[start : start + 5_000])
        services.index.rebuild(store, progress=True)
    services.index.load()
    user_ids = store.events.user_ids()
    with tqdm(total=len(user_ids), desc="profiles and candidates", unit="user") as bar:
        services.refresh_users(user_ids, on_progress=bar.update)
    return services


class Pool:
    """Keep-alive HTTP/1.1 connections on loopback; a request takes the connection idle
    longest, or opens one, up to ``size``; past that it waits for a free one."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.slots = asyncio.Semaphore(size)

    async def open(self, count: int) -> None:
        """``count`` connections now, as that many clients would hold: requests spread over
        them, and so over the server's workers, which each take their share of connections."""
        for _ in range(count):
            self.idle.put_nowait(await asyncio.open_connection(self.host, self.port))

    async def get(self, path: str) -> int:
        async with self.slots:
            reader, writer = (
                self.idle.get_nowait()
                if not self.idle.empty()
                else await asyncio.open_connection(self.host, self.port)
            )
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
            except BaseException:
                writer.close()
                raise
            self.idle.put_nowait((reader, writer))
            return status


async def drive(
    pool: Pool | Spread, paths: list[str], rate: float, connections: int = 0
) -> tuple[list[float], int]:
    """Send paths[i] at start + i/rate over ``connections`` opened first (and more when
    they are all busy); (latencies of the 200s in ms, errors)."""
    latencies: list[float] = []
    errors = 0
    await pool.open(connections)

    async def one(path: str, due: float) -> None:
        nonlocal errors
        try:
            status = await asyncio.wait_for(pool.get(path), REQUEST_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, StopIteration):
            status = 0
        if status == 200:
            latencies.append((time.perf_counter() - due) * 1000)
        else:
            errors += 1

    start = time.perf_counter() + 0.05
    requests = []
    for i, path in enumerate(paths):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        requests.append(asyncio.create_task(one(path, due)))
    await asyncio.gather(*requests)
    return latencies, errors


def run_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """uvloop when installed (it comes with uvicorn[standard]): the generator's own cost per
    request is CPU taken from the server on the same machine."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def run_rates(
    bases: list[str],
    user_ids: list[str],
    rates: list[float],
    options: argparse.Namespace,
    workers: list[int],
) -> None:
    addresses = [base.split("//")[1].split(":") for base in bases]

    def pools() -> Spread:
        return Spread([Pool(host, int(port), MAX_CONNECTIONS) for host, port in addresses])

    chooser = random.Random(7)
    k, connections = options.k, options.connections
    if options.warmup:
        # Not measured: until every worker process has loaded its index and counted popularity
        # (/ready answers as soon as one has), the first rate would be served by fewer workers.
        paths = [_path(chooser, user_ids, k) for _ in range(int(WARMUP_RATE * options.warmup))]
        _, errors = run_loop(drive(pools(), paths, WARMUP_RATE, connections))
        print(f"warm-up: {len(paths)} requests at {WARMUP_RATE:g}/s, {errors} errors, not counted")
    print(
        "\n| rate (req/s) | sent | errors | achieved | p50 ms | p90 ms | p99 ms | max ms "
        "| server CPU ms/req | workers' shares |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for rate in rates:
        paths = [_path(chooser, user_ids, k) for _ in range(int(rate * options.duration))]
        cpu_before = cpu_seconds(workers)
        started = time.perf_counter()
        latencies, errors = run_loop(drive(pools(), paths, rate, connections))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(workers) - cpu_before
        p50, p90, p99 = np.percentile(latencies, [50, 90, 99]) if latencies else (0, 0, 0)
        shares = "/".join(f"{share:.0%}" for share in cpu / max(cpu.sum(), 1e-9))
        print(
            f"| {rate:g} | {len(paths)} | {errors} | {len(paths) / elapsed:.1f} | {p50:.1f} "
            f"| {p90:.1f} | {p99:.1f} | {max(latencies, default=0):.1f} "
            f"| {1000 * cpu.sum() / max(len(paths), 1):.2f} | {shares} |",
            flush=True,
        )


class Spread:
    """Requests alternating over the pools of several instances (a round-robin balancer)."""

    def __init__(self, pools: list[Pool]) -> None:
        self.pools, self.turn = pools, 0

    async def open(self, count: int) -> None:
        for pool in self.pools:
            await pool.open(count // len(self.pools))

    async def get(self, path: str) -> int:
        self.turn = (self.turn + 1) % len(self.pools)
        return await self.pools[self.turn].get(path)


def _path(chooser: random.Random, user_ids: list[str], k: int) -> str:
    return f"/v1/users/{chooser.choice(user_ids)}/recommendations?k={k}"


def profile_requests(services: Services, user_ids: list[str], count: int, k: int) -> None:
    """The request's own work (profile lookup + recommend), in process, under cProfile."""
    chooser = random.Random(11)
    users = [chooser.choice(user_ids) for _ in range(count)]
    timings = []
    profiler = cProfile.Profile()
    for user in users:
        started = time.perf_counter()
        profiler.enable()
        profile, history = services.profiler.current_with_history(user)
        services.recommender.recommend(profile, k, history)
        profiler.disable()
        timings.append((time.perf_counter() - started) * 1000)
    print(
        f"\nin-process, {count} requests: median {np.median(timings):.2f} ms, "
        f"p99 {np.percentile(timings, 99):.2f} ms"
    )
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    print(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--events-per-user", type=int, default=60)
    parser.add_argument("--work", type=Path, default=Path(".bench/load"))
    parser.add_argument("--embedder", default="static-minilm", help="IPROF_EMBED_MODEL to use")
    parser.add_argument("--rates", default="50,100,200,300")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per rate")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--warmup", type=float, default=20.0, help=f"seconds at {WARMUP_RATE:g}/s, not counted"
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=2, help="server processes (one per core)")
    parser.add_argument(
        "--connections",
        type=int,
        default=32,
        help="keep-alive connections opened up front, as many clients would hold (0: open "
        "them only when all are busy, as one client with a pool would)",
    )
    parser.add_argument("--profile", type=int, default=0, help="profile N requests in process")
    parser.add_argument(
        "--compare",
        type=Path,
        help="then the same rates against another checkout's service (e.g. a git worktree of "
        "an older commit), on the same data",
    )
    parser.add_argument(
        "--rebuild-index", action="store_true", help="rebuild the index of an existing work folder"
    )
    parser.add_argument("--stores", default="sqlite", help="sqlite, or sqlite,postgresql")
    args = parser.parse_args(argv)
    settings = Settings(
        data_dir=args.work / "data", index_dir=args.work / "index", embed_model=args.embedder
    )
    services = prepare(settings, args.items, args.users, args.events_per_user, args.rebuild_index)
    user_ids = services.store.events.user_ids()
    print(
        f"{args.items} items ({services.index.get().manifest.factory}), {len(user_ids)} users, "
        f"embedder {settings.embed_model}; {os.cpu_count()} CPUs"
    )
    if args.profile:
        profile_requests(services, user_ids, args.profile, args.k)
        return 0
    services.close()
    # The generator's own pauses count as the server's latency (requests leave late). With the
    # prepared index and models still referenced here, each full collection of the generator
    # walked them: about 0.5 s, the slowest "request" of several runs and 0.8% of a 200 req/s
    # minute queued behind it. Released, and what remains frozen out of the collector.
    del services
    gc.collect()
    gc.freeze()
    rates = [float(r) for r in args.rates.split(",")]
    for code in [None, *([args.compare] if args.compare else [])]:
        print(f"\nserved from {code or 'this checkout'}, SQLite, one instance")
        server = start_server(settings, args.port, args.workers, code)
        try:
            run_rates([f"http://127.0.0.1:{args.port}"], user_ids, rates, args, worker_pids(server))
        finally:
            stop_server(server)
    if "postgresql" in args.stores:
        run_on_postgres(settings, args, rates)
    return 0


def run_on_postgres(settings: Settings, args: argparse.Namespace, rates: list[float]) -> None:
    """The same data in a throwaway PostgreSQL, served by two instances of one process each."""
    from tests.fixtures.pg_server import postgres_server

    with postgres_server() as url:
        shared = settings.model_copy(
            update={"database_url": url, "index_dir": args.work / "index-pg"}
        )
        services = prepare(shared, args.items, args.users, args.events_per_user, False)
        user_ids = services.store.events.user_ids()
        services.close()
        del services
        gc.collect()
        ports = [args.port + 1, args.port + 2]
        print(f"\nserved from this checkout, PostgreSQL, two instances (ports {ports})")
        servers = [start_server(shared, port, 1) for port in ports]
        try:
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            workers = [pid for server in servers for pid in worker_pids(server)]
            run_rates(bases, user_ids, rates, args, workers)
        finally:
            for server in servers:
                stop_server(server)


if __name__ == "__main__":
    sys.exit(main())
