"""Item search on a GPU, when the service runs on one.

FAISS's own GPU index is used where its kernels run on the card: a probe search at load time
proves it. The PyPI faiss-gpu-cu12 wheels carry no kernels for Hopper (H100, H200), and
faiss-cpu has no GPU support at all; there the search is exact instead: the item vectors sit on
the GPU in half precision and a batch of queries is one matrix product and a top-k. On a GPU
that is exact and still far faster than an inverted index on the CPU (a million MiniLM vectors
are 0.7 GiB), so it needs no nprobe.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

# The vectors may take at most this share of the GPU's free memory: the rest is the LLM's.
GPU_MEMORY_SHARE = 0.5
UPLOAD_ROWS = 65_536


class GpuSearch(Protocol):
    name: str
    exact: bool  # exact scores: no nprobe, nothing to re-rank

    def search(
        self, queries: np.ndarray, k: int, nprobe: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, rows), best first, as FAISS returns them."""
        ...


class TorchExactSearch:
    """Exact inner-product search with torch on ``device`` (half precision on CUDA)."""

    name = "torch exact"
    exact = True

    def __init__(self, vectors: np.ndarray, device: str) -> None:
        import torch

        self.device = device
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        self._matrix = torch.empty(vectors.shape, dtype=dtype, device=device)
        # In slices: the vectors may be a memory map larger than what should sit in RAM.
        for start in range(0, len(vectors), UPLOAD_ROWS):
            part = np.array(vectors[start : start + UPLOAD_ROWS], dtype=np.float32)  # a copy
            self._matrix[start : start + len(part)] = torch.from_numpy(part).to(device, dtype)

    def search(
        self, queries: np.ndarray, k: int, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            batch = torch.from_numpy(queries).to(self.device, self._matrix.dtype)
            scores, rows = torch.topk(batch @ self._matrix.T, k, dim=1)
        return scores.float().cpu().numpy(), rows.cpu().numpy().astype(np.int64)


class FaissGpuSearch:
    """FAISS's GPU copy of the index, searched with the per-call nprobe as on the CPU."""

    name = "faiss gpu"
    exact = False

    def __init__(self, index: Any, resources: Any) -> None:
        self._index = index
        self._resources = resources  # the GPU index lives as long as they do
        # FAISS GPU indexes and their resources are not thread-safe, searches included; the
        # handler threads take turns (a GPU search is far shorter than a request).
        self._lock = threading.Lock()

    def search(
        self, queries: np.ndarray, k: int, nprobe: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        params = faiss.SearchParametersIVF(nprobe=nprobe) if nprobe else None  # type: ignore[call-arg]
        with self._lock:
            scores, rows = self._index.search(queries, k, params=params)
        return scores, rows.astype(np.int64)


def gpu_search(index: Any, vectors: np.ndarray, nprobe: int) -> GpuSearch | None:
    """A GPU search for this index when there is a CUDA device and room on it; None keeps the
    search on the CPU."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info()
    if vectors.size * 2 > free * GPU_MEMORY_SHARE:
        log.warning("item vectors do not fit the GPU's free memory: searching on the CPU")
        return None
    on_faiss_gpu = _faiss_gpu(index, vectors, nprobe)
    return on_faiss_gpu or TorchExactSearch(vectors, "cuda")


def _faiss_gpu(index: Any, vectors: np.ndarray, nprobe: int) -> FaissGpuSearch | None:
    """FAISS's GPU index, if this FAISS build has GPU support and its kernels (and per-call
    nprobe) run here."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return None
    try:
        resources = faiss.StandardGpuResources()
        searcher = FaissGpuSearch(faiss.index_cpu_to_gpu(resources, 0, index), resources)
        probe = np.ascontiguousarray(vectors[:1], dtype=np.float32)
        searcher.search(probe, 1, nprobe or None)
    except (RuntimeError, TypeError) as error:  # e.g. no kernel image for this architecture
        log.info("FAISS GPU index unusable here (%s): exact search with torch", error)
        return None
    return searcher
