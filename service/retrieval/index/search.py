"""The loaded item index: FAISS search by text or by vector, exact re-ranking of PQ candidates,
and loading the current build (refused when it was made for another embedder)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.embedding.encoder import Embedder
from service.retrieval.collaborative import ItemModel
from service.retrieval.index.folders import (
    FORMAT_VERSION,
    IndexMismatch,
    Manifest,
    current_build,
    read_manifest,
)
from service.retrieval.index.gpu import GpuSearch, gpu_search

log = logging.getLogger(__name__)


# A PQ search fetches this many times k candidates for the exact re-ranking.
REFINE_FACTOR = 10


class ItemIndex:
    def __init__(
        self,
        index: Any,
        item_ids: list[str],
        vectors: np.ndarray,
        manifest: Manifest,
        collaborative: ItemModel | None = None,
        gpu: GpuSearch | None = None,
    ) -> None:
        self._index = index
        self.gpu = gpu  # searches go there when set (service/retrieval/index/gpu.py)
        self.item_ids = item_ids
        self.vectors = vectors
        self._matrix = vectors.view(np.ndarray)
        self.manifest = manifest
        self.collaborative = collaborative
        self._rows = {item_id: row for row, item_id in enumerate(item_ids)}
        # Ranking works on rows, not ids: these translate once per build what it needs.
        self.id_order = _ranks_of(item_ids)
        self.collaborative_rows = (
            self.rows_of(collaborative.item_ids, missing=-1)
            if collaborative is not None
            else np.zeros(0, dtype=np.int64)
        )
        # Rows the collaborative model has no interaction for: new items. Only the content
        # sources can find them, so the fusion gives those hits a list of their own.
        self.new_to_model = np.ones(len(item_ids), dtype=bool)
        self.new_to_model[self.collaborative_rows[self.collaborative_rows >= 0]] = False

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def rows_of(self, item_ids: Iterable[str], missing: int | None = None) -> np.ndarray:
        """The rows of the given items, in their order; an item not in the index is skipped,
        or given ``missing`` as its row when that is set."""
        rows = self._rows
        if missing is None:
            found = [rows[i] for i in item_ids if i in rows]
        else:
            found = [rows.get(i, missing) for i in item_ids]
        return np.array(found, dtype=np.int64)

    def search(
        self, queries: np.ndarray, k: int, nprobe: int | None = None
    ) -> list[list[tuple[str, float]]]:
        """Top ``k`` (item id, cosine similarity) per query row."""
        scores, rows = self.search_rows(queries, k, nprobe)
        ids = self.item_ids
        return [
            [(ids[r], s) for r, s in zip(row_ids, row_scores) if r >= 0]
            for row_ids, row_scores in zip(rows.tolist(), scores.tolist())
        ]

    def search_rows(
        self, queries: np.ndarray, k: int, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (cosine similarities, rows) per query row, best first; a row of -1 where
        fewer than ``k`` were found."""
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, len(self.item_ids))
        if self.gpu is not None and self.gpu.exact:
            return self.gpu.search(queries, k, None)
        fetch = min(k * REFINE_FACTOR, len(self.item_ids)) if self._refines else k
        nprobe = (nprobe or self.manifest.nprobe) or None
        if self.gpu is not None:
            scores, rows = self.gpu.search(queries, fetch, nprobe)
        else:
            # nprobe per call, never set on the shared index: concurrent searches stay apart.
            params = faiss.SearchParametersIVF(nprobe=nprobe) if nprobe else None  # type: ignore[call-arg]
            scores, rows = self._index.search(queries, fetch, params=params)  # type: ignore[attr-defined]
        if self._refines:
            scores, rows = self._rerank(queries, rows, k)
        return scores, rows

    @property
    def _refines(self) -> bool:
        return "PQ" in self.manifest.factory

    def _rerank(
        self, queries: np.ndarray, rows: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the PQ candidates, from the full vectors: the codes find the
        neighbourhood, the vectors order it."""
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        best = np.full((len(queries), k), -1, dtype=np.int64)
        for q, candidates in enumerate(rows):
            # Sorted rows: the memory-mapped vectors are read front to back.
            candidates = np.sort(candidates[candidates >= 0])
            exact = np.asarray(self.vectors[candidates], dtype=np.float32) @ queries[q]
            order = np.argsort(-exact)[:k]
            best[q, : len(order)] = candidates[order]
            scores[q, : len(order)] = exact[order]
        return scores, best

    def vectors_of(self, item_ids: Iterable[str]) -> np.ndarray:
        """Stored vectors of the given items; items not in the index (added since the last
        build) are skipped, so the result may have fewer rows, even none."""
        rows = [self._rows[i] for i in item_ids if i in self._rows]
        # Indexed as a plain array: a memmap's own indexing costs several times more per call.
        return np.asarray(self._matrix[rows], dtype=np.float32).reshape(
            len(rows), self.manifest.dimension
        )


def _ranks_of(item_ids: Sequence[str]) -> np.ndarray:
    """Each row's place in id order (ties in a ranking are broken by id). Builds list their
    items in id order already; an index made otherwise is sorted once here."""
    if all(a < b for a, b in zip(item_ids, item_ids[1:])):
        return np.arange(len(item_ids), dtype=np.int64)
    order = sorted(range(len(item_ids)), key=item_ids.__getitem__)
    ranks = np.empty(len(item_ids), dtype=np.int64)
    ranks[order] = np.arange(len(item_ids))
    return ranks


def load_index(root: Path, embedder: Embedder, search_on_gpu: bool = False) -> ItemIndex:
    """Load the current build; refuse one made for another embedder or format, or whose files
    do not agree with its manifest. ``search_on_gpu``: search on the GPU when there is one."""
    import faiss

    folder = current_build(root)
    manifest = read_manifest(folder)
    problem = _mismatch(manifest, embedder)
    if problem:
        raise IndexMismatch(
            f"index {manifest.build_id} {problem}: rebuild it (`iprof build-index`)"
        )
    try:
        index = faiss.read_index(str(folder / "index.faiss"))
        item_ids = json.loads((folder / "item_ids.json").read_text(encoding="utf-8"))
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        collaborative = ItemModel.load(folder)
    # UnicodeDecodeError is a ValueError; KeyError: an array missing from the model file.
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        raise IndexMismatch(
            f"index {manifest.build_id} cannot be read ({error}): rebuild it"
        ) from error
    expected = (manifest.count, manifest.dimension)
    ids_ok = isinstance(item_ids, list) and all(isinstance(i, str) for i in item_ids)
    if not ids_ok or len(item_ids) != manifest.count or index.ntotal != manifest.count:
        raise IndexMismatch(
            f"index {manifest.build_id}: its files disagree with its manifest; rebuild it"
        )
    if vectors.shape != expected or index.d != manifest.dimension:
        raise IndexMismatch(f"index {manifest.build_id}: vectors are not {expected}; rebuild it")
    if (len(collaborative) if collaborative else 0) != manifest.collaborative_items:
        raise IndexMismatch(
            f"index {manifest.build_id}: its collaborative model disagrees with its manifest; "
            "rebuild it"
        )
    gpu = gpu_search(index, vectors, manifest.nprobe) if search_on_gpu else None
    if gpu is not None:
        log.info("item search on the GPU: %s", gpu.name)
    return ItemIndex(index, item_ids, vectors, manifest, collaborative, gpu)


def _mismatch(manifest: Manifest, embedder: Embedder) -> str | None:
    if manifest.format_version != FORMAT_VERSION:
        return f"has format {manifest.format_version}, this service reads {FORMAT_VERSION}"
    if manifest.embedder != embedder.model_id or manifest.dimension != embedder.dimension:
        return (
            f"was built with {manifest.embedder} (dimension {manifest.dimension}) but the "
            f"service embeds with {embedder.model_id} (dimension {embedder.dimension})"
        )
    return None
