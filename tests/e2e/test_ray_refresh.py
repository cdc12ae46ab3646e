"""`iprof refresh --engine ray` on a small local Ray: the same profiles as the local refresh."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.app.cli import app
from service.app.ray_refresh import plan_actors
from service.core.config import Settings
from service.ingest.demo import demo_catalog, demo_users
from service.ingest.demo_events import demo_events
from service.store import Store
from tests.fixtures.pg_server import free_port

runner = CliRunner()


def test_one_actor_per_gpu_else_per_cpu_and_no_idle_actors():
    assert plan_actors(1000, {"CPU": 2.0}, None) == (2, 64, 0.0)
    assert plan_actors(1000, {"CPU": 64.0, "GPU": 8.0}, None) == (8, 64, 1.0)
    assert plan_actors(10, {"CPU": 2.0}, None) == (2, 5, 0.0)  # two batches of 5, not one
    assert plan_actors(3, {"CPU": 16.0}, 8) == (3, 1, 0.0)


def test_local_flags_refuse_ray_options(monkeypatch):
    monkeypatch.setenv("IPROF_EMBED_MODEL", "hashing")
    result = runner.invoke(app, ["refresh", "--all", "--address", "ray://x:10001"])
    assert result.exit_code == 2 and "go with --engine ray" in result.output


def _summary(output: str) -> list[str]:
    """The refresh's summary: its line and one per fallback reason (not Ray's logs)."""
    return [line for line in output.splitlines() if line.startswith(("users:", "  "))]


def _windows(store: Store, user_ids: list[str]) -> dict[tuple[str, int], tuple[str, str, str]]:
    return {
        (p.user_id, p.window.index): (p.source_key, p.provenance["events_hash"], p.summary)
        for user in user_ids
        for p in store.profiles.of_user(user)
    }


@pytest.mark.slow
def test_ray_refresh_profiles_every_demo_user_as_the_local_refresh_does(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="the scale extra (ray) is not installed")
    monkeypatch.setenv("IPROF_EMBED_MODEL", "hashing")
    users = sorted(u.user_id for u in demo_users())
    outputs, windows = {}, {}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # one session for all
    try:
        for engine in ("local", "ray"):
            monkeypatch.setenv("IPROF_DATA_DIR", str(tmp_path / engine))
            store = Store(Settings().database_path)
            store.items.upsert(demo_catalog())
            store.events.add(demo_events())
            store.close()
            result = runner.invoke(app, ["refresh", "--all", "--engine", engine])
            assert result.exit_code == 0, result.output
            outputs[engine] = _summary(result.output)
            store = Store(Settings().database_path)
            windows[engine] = _windows(store, users)
            assert {user for user, _ in windows[engine]} == set(users)  # every demo user
            store.close()
        again = runner.invoke(app, ["refresh", "--all", "--engine", "ray"])
    finally:
        ray.shutdown()
    assert windows["ray"] == windows["local"]  # same windows, same hashes, same summaries
    assert outputs["ray"] == outputs["local"]  # the same summary line, fallbacks included
    assert outputs["ray"][0].startswith(f"users: {len(users)} refreshed, 0 unknown")
    assert again.exit_code == 0 and "windows generated: 0;" in again.output  # nothing changed


def test_a_wrong_cluster_address_fails_within_its_timeout_naming_it(monkeypatch, tmp_path):
    pytest.importorskip("ray", reason="the scale extra (ray) is not installed")
    import time

    from service.app.ray_refresh import CONNECT_TIMEOUT_S, RayUnavailable, refresh_on_ray

    # RAY_ADDRESS, as Ray's own tools read it, when no --address is given.
    monkeypatch.setenv("RAY_ADDRESS", "ray://127.0.0.1:1")
    started = time.monotonic()
    with pytest.raises(RayUnavailable, match=r"ray://127\.0\.0\.1:1.*ray://HEAD:10001"):
        refresh_on_ray(Settings(data_dir=tmp_path), ["someone"])
    assert time.monotonic() - started < CONNECT_TIMEOUT_S + 10


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head started as an operator starts one (`ray start --head`), with a client
    server and token authentication: its token file, and its GCS and ray:// addresses.
    Stopped with `ray stop` afterwards."""
    pytest.importorskip("ray", reason="the scale extra (ray) is not installed")
    ray_cli = str(Path(sys.executable).with_name("ray"))
    port, client_port = free_port(), free_port()
    start = [ray_cli, "start", "--head", "--num-cpus", "2", "--port", str(port)]
    start += ["--ray-client-server-port", str(client_port), "--include-dashboard", "false"]
    start += ["--node-ip-address", "127.0.0.1"]  # this machine's loopback, whatever its IP
    # With token authentication, as Ray (2.52 on) has it where a token exists: a token of
    # this test's own, which the drivers find through RAY_AUTH_TOKEN_PATH.
    token = tmp_path / "ray-token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "token"}
    env["RAY_AUTH_TOKEN_PATH"] = str(token)
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
    try:
        yield token, (f"127.0.0.1:{port}", f"ray://127.0.0.1:{client_port}")
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)


@pytest.mark.slow
def test_ray_refresh_runs_on_a_started_head_by_either_address(ray_head, tmp_path):
    token, addresses = ray_head
    store = Store(Settings(data_dir=tmp_path).database_path)
    store.items.upsert(demo_catalog())
    store.events.add(demo_events())
    store.close()
    # `iprof` in a process of its own, as an operator runs it (Ray keeps one token per
    # process). Not told the mode: the refresh sees the token and sends it.
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env |= {"IPROF_EMBED_MODEL": "hashing", "IPROF_DATA_DIR": str(tmp_path)}
    env |= {"RAY_AUTH_TOKEN_PATH": str(token), "HF_HUB_OFFLINE": "1"}
    iprof = str(Path(sys.executable).with_name("iprof"))
    for address in addresses:  # RAY_ADDRESS, as `ray start` tells operators to set it
        command = [iprof, "refresh", "--all", "--force", "--engine", "ray"]
        done = subprocess.run(
            command, env={**env, "RAY_ADDRESS": address}, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{address}: {done.stdout} {done.stderr[-2000:]}"
        summary = _summary(done.stdout)
        assert summary[0].startswith(f"users: {len(demo_users())} refreshed, 0 unknown"), summary
