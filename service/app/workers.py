"""Running the API in several worker processes, each listening on its own socket.

uvicorn's own workers share one listening socket, and whichever is awake first accepts the
connections waiting: under load one worker took most of a client's keep-alive connections and
queued while the other idled (docs/PERFORMANCE.md, "What changed"). Here every worker binds
its own socket to the same port with SO_REUSEPORT, and the kernel spreads new connections over
them by a hash of their addresses. Where the platform has no SO_REUSEPORT, uvicorn's workers
are used.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType

APP = "service.app.factory:create_app"
BACKLOG = 2048
STOP_SECONDS = 30  # for all workers together to finish their requests
PR_SET_PDEATHSIG = 1  # prctl(2)


def serve(host: str, port: int, workers: int, access_log: bool) -> None:
    import uvicorn

    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, access_log=access_log)
        return
    _refuse_if_taken(host, port)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_worker, args=(host, port, access_log, os.getpid()), name=f"iprof-{n}"
        )
        for n in range(workers)
    ]
    stopping = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes its requests and shuts down

    # Before any worker starts: a stop asked for meanwhile must reach every one of them.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for process in processes:
        if not stopping:
            process.start()
    started = [process for process in processes if process.pid is not None]
    ended = _wait_for_one(started) if started else None
    told_to_stop = bool(stopping)
    stop(signal.SIGTERM, None)
    deadline = time.monotonic() + STOP_SECONDS
    for process in started:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
    # Asked to stop: a clean exit. Otherwise a worker ended on its own (it failed to start,
    # or crashed) and the rest were stopped with it: a supervisor should restart the service.
    sys.exit(0 if told_to_stop or ended is None else _exit_status(ended.exitcode))


def _exit_status(code: int | None) -> int:
    """A worker's exit code as a shell reports it (killed by signal N: 128 + N)."""
    if code is None or code == 0:
        return 1  # it ended on its own, which a serving worker never should
    return 128 - code if code < 0 else code


def _wait_for_one(
    processes: Sequence[multiprocessing.process.BaseProcess],
) -> multiprocessing.process.BaseProcess:
    from multiprocessing.connection import wait

    ready = wait([process.sentinel for process in processes])
    return next(p for p in processes if p.sentinel in ready)


def _worker(host: str, port: int, access_log: bool, parent: int) -> None:
    import threading

    import uvicorn
    from tqdm import tqdm

    _stop_with_parent(parent)
    # tqdm's default lock is a named semaphore in /dev/shm; the workers left theirs behind
    # ("leaked semaphore objects" at every shutdown). Their model-loading bars need only a
    # thread lock.
    tqdm.set_lock(threading.RLock())
    config = uvicorn.Config(APP, factory=True, access_log=access_log)
    uvicorn.Server(config).run(sockets=[_listening(host, port, reuse_port=True)])


def _stop_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM when the parent dies (Linux): a parent killed outright
    (SIGKILL, the OOM killer) would otherwise leave its workers serving, holding the port
    against the restarted service."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the workers outlive a killed parent
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def _listening(host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def _refuse_if_taken(host: str, port: int) -> None:
    """SO_REUSEPORT would let the workers share the port with another server of the same
    user still running (an old instance): a plain bind first says whether anyone has it."""
    try:
        _listening(host, port, reuse_port=False).close()
    except OSError as error:
        raise SystemExit(f"cannot listen on {host}:{port}: {error.strerror}") from None
