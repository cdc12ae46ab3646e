"""How the hot read routes run: their work and its JSON encoding in one handler-thread call, in
threads set up once for FAISS (one OpenMP thread per search)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from anyio import to_thread
from fastapi import Response
from pydantic import BaseModel

HANDLER_THREADS = 4


def _one_thread_per_search() -> None:
    """Concurrent requests are the server's parallelism. FAISS would also spread each small
    search over an OpenMP team whose threads spin while they wait: on two cores that burnt
    about 8% of the CPU per request under load and sped nothing up."""
    import faiss

    faiss.omp_set_num_threads(1)


async def answer_in_thread(work: Callable[[], BaseModel]) -> Response:
    """``work`` and the JSON encoding of its answer in one handler-thread call. A plain ``def``
    route costs two (FastAPI validates a sync route's return value in the pool again) and
    encodes on the event loop; under load each hand-off is a wait for the GIL."""
    body = await to_thread.run_sync(lambda: _in_handler_thread(work).model_dump_json().encode())
    return Response(body, media_type="application/json")


_handler_thread = threading.local()


def _in_handler_thread(work: Callable[[], BaseModel]) -> BaseModel:
    """``work``, in a handler thread set up for it once. OpenMP's thread count belongs to the
    thread that sets it: the lifespan's setting never reached the handler threads, whose
    FAISS searches each ran on an OpenMP team of two, spinning between searches: twice the CPU
    a request (docs/PERFORMANCE.md, "What changed")."""
    if not getattr(_handler_thread, "ready", False):
        _one_thread_per_search()
        _handler_thread.ready = True
    return work()
