"""The service under test in processes of its own, for the load test: start an ``iprof serve``
(of this checkout or of another one, to compare), wait until it is ready, stop its whole process
group, and read how much CPU its workers used."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from service.core.config import Settings


def cpu_seconds(pids: list[int]) -> np.ndarray:
    """CPU time (user + system) each process has used, from /proc (zeros elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    used = []
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used.append((int(fields[11]) + int(fields[12])) / ticks)
        except (OSError, IndexError, ValueError):
            used.append(0.0)
    return np.array(used)


def worker_pids(server: subprocess.Popen[bytes]) -> list[int]:
    """The server's worker processes: its children but multiprocessing's resource tracker
    (itself when it has none)."""
    try:
        found = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        workers = [
            int(pid)
            for pid in found
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
    except OSError:
        return [server.pid]
    return workers or [server.pid]


def start_server(
    settings: Settings, port: int, workers: int, code: Path | None = None
) -> subprocess.Popen[bytes]:
    """``iprof serve`` of this checkout; with ``code``, another checkout's service (an older
    commit, say) served by uvicorn's own workers, as its ``iprof serve`` did."""
    env = {
        **os.environ,
        # Absolute: the other checkout's server runs in its own folder.
        "IPROF_DATA_DIR": str(settings.data_dir.resolve()),
        "IPROF_INDEX_DIR": str(settings.index_dir.resolve()),
        "IPROF_EMBED_MODEL": settings.embed_model or "",
        "IPROF_DATABASE_URL": settings.database_url or "",
        "HF_HUB_OFFLINE": "1",
    }
    command = [str(Path(sys.executable).with_name("iprof")), "serve"]
    if code is not None:
        env["PYTHONPATH"] = str(code.resolve())
        uvicorn = Path(sys.executable).with_name("uvicorn")
        command = [str(uvicorn), app_factory_path(code), "--factory", "--app-dir", str(code)]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--workers", str(workers), "--no-access-log"],
        env=env,
        cwd=code,  # uvicorn puts the working directory first on the import path too
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its workers too can be stopped as one group
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            pass
        if server.poll() is not None:
            stop_server(server)
            raise SystemExit(f"the server exited with {server.returncode}")
        time.sleep(0.5)
    stop_server(server)
    raise SystemExit("the server was not ready within 120 s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's whole process group (uvicorn's workers outlive a killed parent),
    SIGKILL if it has not ended within 30 s."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    except ProcessLookupError:  # the group is gone already
        server.wait()


def app_factory_path(code: Path) -> str:
    """The other checkout's app factory: older checkouts kept it in a flat service/api.py."""
    if (code / "service" / "app" / "factory.py").is_file():
        return "service.app.factory:create_app"
    return "service.api:create_app"
