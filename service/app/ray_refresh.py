"""`iprof refresh --engine ray`: the refresh spread over a Ray cluster with Ray Data.

The driver lists the users; ``Dataset.map_batches`` hands them, a batch at a time, to a pool
of actors. Each actor holds what one process of the local refresh holds (a summarizer, an
embedder, the store, the item index: ``build_services``), and runs the local refresh on its
batch (``Services.refresh_users``): the same plan and skip rules (only windows whose events,
items or makers changed are generated), the summarizer's own LLM batching inside the batch,
and the batch's profiles written back in one transaction per round. The actors return counts
only; profiles never travel back through the driver.

Where the store is: every actor opens it. PostgreSQL (``IPROF_DATABASE_URL``) is what a
cluster needs; SQLite works for a local Ray, whose actors share this machine's file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.core.config import Settings
from service.profiling.profiler import USERS_PER_ROUND, RefreshReport

log = logging.getLogger(__name__)

# A local Ray (no --address) gets this many CPUs: the machine's, at most.
LOCAL_CPUS = 2
# How long connecting to a cluster may take before the refresh gives up, saying so.
CONNECT_TIMEOUT_S = 30.0


class RayUnavailable(RuntimeError):
    pass


def _connect(ray: Any, address: str | None) -> None:
    """A local Ray of LOCAL_CPUS without ``address``; else the cluster there (``ray://host:10001``
    as a client, ``host:6379`` from a node of it), or RayUnavailable within CONNECT_TIMEOUT_S
    saying what to check: Ray's own connection attempts retry for minutes, mostly in silence."""
    if address is None:  # started here, in this thread (a local Ray installs signal handlers)
        cpus = min(LOCAL_CPUS, os.cpu_count() or 1)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        return
    _say_token_auth_where_a_token_is()
    failure: list[BaseException] = []

    def connect() -> None:
        try:  # a cluster has its own CPUs: none asked for
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except BaseException as error:  # handed to the caller below
            failure.append(error)

    attempt = threading.Thread(target=connect, name="ray-connect", daemon=True)
    attempt.start()
    attempt.join(CONNECT_TIMEOUT_S)
    where = f"the Ray cluster at {address}"
    advice = (
        "is its head running, the address right (ray://HEAD:10001 as a client), and, where the"
        " cluster uses token authentication, this machine's token in ~/.ray/auth_token or"
        " RAY_AUTH_TOKEN?"
    )
    if attempt.is_alive():
        raise RayUnavailable(f"could not reach {where} within {CONNECT_TIMEOUT_S:g} s: {advice}")
    if failure:
        error = failure[0]
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RayUnavailable(f"could not reach {where} ({reason}): {advice}") from None


def _say_token_auth_where_a_token_is() -> None:
    """Ray (2.52 on) turns token authentication on for a cluster started where a token exists
    (``ray start`` makes one in ~/.ray/auth_token), and refuses a driver that does not send
    it, retrying in silence until it gives up; a driver sends it only with RAY_AUTH_MODE=token.
    So with a token at hand and no mode chosen, the mode is token: a cluster without
    authentication accepts such a driver just the same."""
    if "RAY_AUTH_MODE" in os.environ:
        return  # the operator's choice
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    if os.environ.get("RAY_AUTH_TOKEN") or Path(token_file).is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        try:  # Ray read the mode when it was imported: reread, as its own token setup does
            from ray._raylet import Config  # type: ignore[attr-defined]

            Config.initialize("")
        except (ImportError, AttributeError):  # a Ray without token authentication
            pass


class RefreshActor:
    """One summarizer, embedder, store connection and index per actor, loaded once."""

    def __init__(self, settings: dict[str, Any], force: bool) -> None:
        from service.app.container import build_services

        self.services = build_services(Settings(**settings))
        self.force = force

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        users = [str(user) for user in batch["user_id"]]
        report = self.services.refresh_users(users, force=self.force)
        return {
            "users": np.array([report.users]),
            "unknown_users": np.array([report.unknown_users]),
            "windows_generated": np.array([report.windows_generated]),
            "fallbacks": np.array([json.dumps(dict(report.fallbacks))]),
        }


def plan_actors(
    users: int, resources: dict[str, float], actors: int | None
) -> tuple[int, int, float]:
    """(actors, users per batch, GPUs per actor): one actor per GPU where there are GPUs,
    else one per CPU; batches of at most a refresh round, fewer when that would leave actors
    idle."""
    gpus = int(resources.get("GPU", 0))
    wanted = actors or gpus or max(1, int(resources.get("CPU", 1)))
    count = max(1, min(wanted, users))
    per_batch = max(1, min(USERS_PER_ROUND, math.ceil(users / count)))
    return count, per_batch, 1.0 if gpus else 0.0


def refresh_on_ray(
    settings: Settings,
    user_ids: Sequence[str],
    *,
    address: str | None = None,
    force: bool = False,
    actors: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RefreshReport:
    """Refresh ``user_ids`` on Ray (a local one without ``address``); the summary of all
    actors' reports, as the local refresh gives it."""
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise RayUnavailable(
            "--engine ray needs Ray: pip install 'interest-profiler[scale]'"
        ) from error
    if not user_ids:
        return RefreshReport()
    started_here = not ray.is_initialized()
    if started_here:
        _connect(ray, address or os.environ.get("RAY_ADDRESS") or None)
    try:
        if _is_ray_client(ray):
            # Ray Data does not run through a Ray client (ray://): the dataset is driven by a
            # task on the cluster instead, and its report comes back whole at the end.
            drive = ray.remote(num_cpus=0)(_refresh_with_dataset)
            found = ray.get(drive.remote(_portable(settings), list(user_ids), force, actors))
            if on_progress:
                on_progress(found.users + found.unknown_users)
            return found
        return _refresh_with_dataset(_portable(settings), user_ids, force, actors, on_progress)
    finally:
        if started_here:
            ray.shutdown()


def _is_ray_client(ray: Any) -> bool:
    """Whether this process is connected through a Ray client (a ray:// address)."""
    return bool(ray.util.client.ray.is_connected())


def _refresh_with_dataset(
    settings: dict[str, Any],
    user_ids: Sequence[str],
    force: bool,
    actors: int | None,
    on_progress: Callable[[int], None] | None = None,
) -> RefreshReport:
    """The users handed, a batch at a time, to a pool of refresh actors (Ray Data); in a
    driver on the cluster (a node of it, or a task when the caller is a Ray client)."""
    import ray
    import ray.data

    report = RefreshReport()
    # The refresh draws its own progress bar and prints its own summary.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    count, per_batch, gpus = plan_actors(len(user_ids), ray.cluster_resources(), actors)
    log.info("ray refresh: %d users, %d actors, %d users a batch", len(user_ids), count, per_batch)
    results = ray.data.from_items([{"user_id": user} for user in user_ids]).map_batches(
        RefreshActor,
        fn_constructor_kwargs={"settings": settings, "force": force},
        batch_size=per_batch,
        compute=ray.data.ActorPoolStrategy(size=count),
        num_cpus=0 if gpus else 1,
        num_gpus=gpus,
    )
    for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
        _add(report, batch)
        if on_progress:
            on_progress(int(batch["users"].sum() + batch["unknown_users"].sum()))
    return report


def _add(report: RefreshReport, batch: dict[str, np.ndarray]) -> None:
    report.users += int(batch["users"].sum())
    report.unknown_users += int(batch["unknown_users"].sum())
    report.windows_generated += int(batch["windows_generated"].sum())
    for text in batch["fallbacks"]:
        report.fallbacks.update(Counter(json.loads(str(text))))


def _portable(settings: Settings) -> dict[str, Any]:
    """The settings as the actors rebuild them: explicit values (a cluster's workers do not
    have this shell's environment) and absolute folders (nor its working directory)."""
    values = settings.model_dump(mode="json")
    for folder in ("data_dir", "index_dir"):
        values[folder] = str(getattr(settings, folder).resolve())
    return values
