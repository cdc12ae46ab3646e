"""A throwaway PostgreSQL server: ``initdb`` + ``pg_ctl`` into a temp folder on a free port.

Used by the tests (the ``pg_url`` fixture) and by the benchmark scripts that compare the two
engines. ``initdb`` refuses to run as root, so as root the server runs as the ``postgres``
user (Debian's package creates it).

    python scripts/pg_server.py      # start one, print its URL, stop it on Ctrl-C
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Debian installs the server binaries outside PATH, one folder per major version.
_CANDIDATES = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")


def find_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (PATH first, then Debian's), or None."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    for pattern in _CANDIDATES:
        for folder in sorted(glob.glob(pattern), reverse=True):  # newest version first
            if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
                return Path(folder)
    return None


def unavailable_reason() -> str | None:
    """Why no throwaway server can start here, or None when one can."""
    if find_binaries() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql"
    if os.geteuid() == 0 and not _has_user("postgres"):
        return "running as root and there is no 'postgres' user for initdb to run as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    return None


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def postgres_server(max_connections: int = 200) -> Iterator[str]:
    """Start a fresh server, yield its URL (user ``iprof``), stop it and delete its files."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    binaries = find_binaries()
    assert binaries is not None
    folder = Path(tempfile.mkdtemp(prefix="iprof-pg-"))
    data, port = folder / "data", _free_port()
    if os.geteuid() == 0:
        os.chown(folder, pwd.getpwnam("postgres").pw_uid, -1)
    run = _runner(folder)
    try:
        run(
            [str(binaries / "initdb"), "-D", str(data), "-U", "iprof", "--auth=trust", "-E", "UTF8"]
        )
        options = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
            f" -c max_connections={max_connections} -c fsync=on"
        )
        start = [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log")]
        run([*start, "-o", options, "-w", "-t", "60", "start"])
        try:
            yield f"postgresql://iprof@127.0.0.1:{port}/postgres"
        finally:
            run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def store_url(kind: str) -> Iterator[str | None]:
    """The ``IPROF_DATABASE_URL`` for a script's ``--store``: None (the SQLite default) for
    ``sqlite``; for ``postgresql``, a throwaway server's URL, the server stopped afterwards."""
    if kind == "sqlite":
        yield None
        return
    with postgres_server() as url:
        yield url


def _runner(folder: Path):  # type: ignore[no-untyped-def]
    def run(command: list[str]) -> None:
        done = subprocess.run(
            _as_server_user(command), cwd=folder, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            log = folder / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{command[0]} failed: {done.stderr.strip()}\n{tail}")

    return run


if __name__ == "__main__":
    with postgres_server() as url:
        print(url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
