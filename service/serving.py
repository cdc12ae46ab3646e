"""Running the API in several worker processes, each listening on its own socket.

uvicorn's own workers share one listening socket, and whichever is awake first accepts the
connections waiting: under load one worker took most of a client's keep-alive connections
(25.5 s of CPU against 6.4 s for the other in a 30 s run at 200 req/s) and queued while the
other idled. Here every worker binds its own socket to the same port with SO_REUSEPORT, and
the kernel spreads new connections over them by a hash of their addresses. Where the platform
has no SO_REUSEPORT, uvicorn's workers are used.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType

APP = "service.api:create_app"
BACKLOG = 2048
STOP_SECONDS = 30


def serve(host: str, port: int, workers: int, access_log: bool) -> None:
    import uvicorn

    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, access_log=access_log)
        return
    _refuse_if_taken(host, port)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(host, port, access_log), name=f"iprof-{n}")
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    stopping = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes its requests and shuts down

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    ended = _wait_for_one(processes)
    told_to_stop = bool(stopping)
    stop(signal.SIGTERM, None)
    for process in processes:
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
    # Asked to stop: a clean exit. Otherwise a worker ended on its own (it failed to start,
    # or crashed) and the rest were stopped with it: a supervisor should restart the service.
    sys.exit(0 if told_to_stop else (ended.exitcode or 1))


def _wait_for_one(
    processes: Sequence[multiprocessing.process.BaseProcess],
) -> multiprocessing.process.BaseProcess:
    from multiprocessing.connection import wait

    ready = wait([process.sentinel for process in processes])
    return next(p for p in processes if p.sentinel in ready)


def _worker(host: str, port: int, access_log: bool) -> None:
    import threading

    import uvicorn
    from tqdm import tqdm

    # tqdm's default lock is a named semaphore in /dev/shm; the workers left theirs behind
    # ("leaked semaphore objects" at every shutdown). Their model-loading bars need only a
    # thread lock.
    tqdm.set_lock(threading.RLock())
    config = uvicorn.Config(APP, factory=True, access_log=access_log)
    uvicorn.Server(config).run(sockets=[_listening(host, port, reuse_port=True)])


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
