"""The `iprof` commands and scripts/build_index.py, on the demo data, with the fake embedder."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts import build_index as build_index_script
from service.app.cli import app
from service.ingest.demo import demo_users
from tests.fixtures.pg_server import free_port

runner = CliRunner()


@pytest.fixture
def hashing(monkeypatch):
    monkeypatch.setenv("IPROF_EMBED_MODEL", "hashing")


def _run(*args):
    result = runner.invoke(app, list(args))
    return result


def test_demo_loads_builds_and_is_idempotent(hashing, tmp_path):
    first = _run("demo")
    assert first.exit_code == 0, first.output
    assert "items: 336" in first.output and "index: 336 items, Flat" in first.output
    assert "windows profiled now" in first.output and "up to date" not in first.output
    again = _run("demo")
    assert again.exit_code == 0
    assert "0 new" in again.output and "index: up to date" in again.output
    assert "all up to date" in again.output
    assert (tmp_path / "index" / "CURRENT").is_file()


def test_profile_history_drift_recommend_on_demo_users(hashing):
    _run("demo")
    shifting = next(u for u in demo_users() if u.shift_at == [30] and len(u.segments) == 2)
    profile = json.loads(_run("profile", shifting.user_id).output)
    assert profile["interests"][0]["label"] == shifting.segments[-1][0]
    history = json.loads(_run("history", shifting.user_id).output)["profiles"]
    assert len(history) == 3
    drift = json.loads(_run("drift", shifting.user_id).output)
    assert set(drift) >= {"drift_detected", "score", "threshold", "gained", "lost"}
    recs = json.loads(_run("recommend", shifting.user_id, "-k", "7").output)["items"]
    assert len(recs) == 7 and all(r["reason"] for r in recs)


def test_unknown_user_is_a_clear_error(hashing):
    result = _run("profile", "nobody")
    assert result.exit_code == 2 and "no events for user 'nobody'" in result.output


def test_ingest_files_and_report_bad_lines(hashing, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,text,categories\na,Alpha,first,X|Y\nb,Beta,,Z\n")
    assert json.loads(_run("ingest-items", str(items)).output) == {"upserted": 2}
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({"user_id": "u", "item_id": "a", "type": "view", "ts": "2024-01-01T00:00:00Z"})
        + "\n"
        + json.dumps({"event_id": "x", "user_id": "u", "item_id": "c", "type": "view", "ts": 5})
        + "\n"
    )
    assert json.loads(_run("ingest-events", str(events)).output) == {
        "accepted": 2,
        "duplicates": 0,
        "unknown_items": 1,
    }
    assert json.loads(_run("ingest-events", str(events)).output)["duplicates"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "u", "item_id": "a", "type": "view"}\n')
    result = _run("ingest-events", str(bad))
    assert result.exit_code == 1 and "bad.jsonl:1: ts: Field required" in result.output
    assert _run("ingest-items", str(tmp_path / "missing.csv")).exit_code == 1


def test_build_index_script_uses_the_same_code(hashing, tmp_path, capsys):
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(
        "\n".join(json.dumps({"item_id": f"i{n}", "title": f"Item {n}"}) for n in range(12))
    )
    assert build_index_script.main(["--catalog", str(catalog)]) == 0
    assert "index: 12 items, Flat" in capsys.readouterr().out
    manifest_dir = (
        tmp_path / "index" / "builds" / (tmp_path / "index" / "CURRENT").read_text().strip()
    )
    assert json.loads((manifest_dir / "manifest.json").read_text())["count"] == 12


def test_build_index_script_fails_cleanly_on_an_empty_catalog(hashing, capsys):
    assert build_index_script.main([]) == 1
    assert "catalog is empty" in capsys.readouterr().err


def test_refresh_all_or_listed_users_with_a_summary(hashing, tmp_path):
    _run("demo")
    everyone = _run("refresh", "--all", "--force")
    assert everyone.exit_code == 0, everyone.output
    assert "users: 12 refreshed, 0 unknown" in everyone.output
    assert "fell back: 0" in everyone.output  # extractive: nothing to fall back from
    listed = tmp_path / "users.txt"
    listed.write_text("alice\nnobody\n")
    some = _run("refresh", "--users", str(listed))
    assert "users: 1 refreshed, 1 unknown; windows generated: 0" in some.output
    assert _run("refresh").exit_code == 2  # neither --users nor --all


def test_refresh_leaves_every_user_ready_for_fast_requests(hashing):
    """After `iprof refresh`, each user's profile state and candidate lists are stored."""
    from service.core.config import Settings
    from service.store import Store

    _run("demo")
    assert _run("refresh", "--all").exit_code == 0
    store = Store(Settings().database_path)
    users = store.events.user_ids()
    read = [store.profiles.current_read(u) for u in users]
    assert all(r.state is not None and r.state.events == r.events for r in read)
    assert all(store.lists.get(u) is not None for u in users)
    store.close()


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status
    except OSError:
        return 0


@pytest.mark.slow
def test_serve_runs_workers_on_their_own_sockets_and_stops_cleanly(tmp_path):
    # The bundled embedder, whose loading draws a progress bar in each worker: a bar's lock
    # used to be a semaphore that the stopped workers leaked.
    port = free_port()
    iprof = str(Path(sys.executable).with_name("iprof"))
    command = [iprof, "serve", "--workers", "2", "--port", str(port)]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Each worker loads the embedder: on a busy 2-core machine that took over 60 s.
        deadline = time.monotonic() + 180
        while _get(f"http://127.0.0.1:{port}/health") != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _get(f"http://127.0.0.1:{port}/health") == 200
        # A second server cannot take the port over, though the workers share it.
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "Address already in use" in second.stderr
        assert _get(f"http://127.0.0.1:{port}/health") == 200
    finally:
        server.terminate()
        assert server.wait(timeout=60) == 0
        log.close()
    assert "leaked" not in (tmp_path / "serve.log").read_text()


@pytest.mark.slow
def test_serve_workers_stop_when_the_parent_is_killed_outright(hashing):
    port = free_port()
    iprof = str(Path(sys.executable).with_name("iprof"))
    command = [iprof, "serve", "--workers", "2", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _get(f"http://127.0.0.1:{port}/health") != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    workers = [
        int(pid)
        for pid in children
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(workers) == 2
    server.send_signal(signal.SIGKILL)  # as the OOM killer would: no handler runs
    server.wait(timeout=10)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)
    with socket.socket() as again:  # nothing listens: the restarted service can bind
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
        again.bind(("127.0.0.1", port))
        again.listen()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie is gone too: its new parent reaps it


def test_migrate_lists_then_applies_and_reading_commands_never_migrate(hashing, monkeypatch):
    monkeypatch.setenv("IPROF_MIGRATE", "off")
    refused = _run("profile", "nobody")  # a reading command on a new database
    assert refused.exit_code != 0 and "iprof migrate" in str(refused.exception)
    listed = _run("migrate", "--dry-run")
    assert listed.exit_code == 0 and "would be applied" in listed.output
    assert "0001_" in listed.output
    assert "would be applied" in _run("migrate", "--dry-run").output  # nothing was applied
    applied = _run("migrate")
    assert applied.exit_code == 0 and "applied" in applied.output
    assert "up to date" in _run("migrate").output
    answered = _run("profile", "nobody")
    assert answered.exit_code == 2 and "no events for user 'nobody'" in answered.output
