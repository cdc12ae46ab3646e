"""The FAISS item index: build, load, search, with a manifest that says what it is.

Layout under the index directory::

    CURRENT                      name of the build being served (replaced atomically)
    builds/<build id>/index.faiss
    builds/<build id>/item_ids.json
    builds/<build id>/vectors.npy  the item embeddings (ranking reuses them)
    builds/<build id>/collaborative.npz  the item-to-item model fitted on the events (if any)
    builds/<build id>/manifest.json

A build is written completely into its own folder before ``CURRENT`` points at it, so a reader
never sees half an index and a crash mid-build leaves the old one serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.core.records import Item
from service.embedding.encoder import Embedder
from service.retrieval.collaborative import ItemModel, fit_item_model
from service.retrieval.gpu_search import GpuSearch, gpu_search

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Below this many items exact search is fast enough (a few ms) and has perfect recall.
EXACT_SEARCH_LIMIT = 50_000
MAX_LISTS = 1_024
# Vectors in memory (half precision) up to this size; above it the index keeps PQ codes of a
# byte per 8 dimensions (16x smaller) and re-ranks its candidates exactly from the vectors on
# disk.
DEFAULT_MEMORY_BUDGET_MB = 4_096
HALF_PRECISION_BYTES = 2
# k-means on 64 points per list: FAISS asks for at least 39, and more buys little but time.
TRAINING_POINTS_PER_LIST = 64
ADD_CHUNK = 65_536
# A PQ search fetches this many times k candidates for the exact re-ranking.
REFINE_FACTOR = 10
KEEP_BUILDS = 2
STALE_PARTIAL_SECONDS = 3_600


class IndexUnavailable(RuntimeError):
    """The index is missing, unreadable or does not fit the service."""


class IndexMismatch(IndexUnavailable):
    pass


class IndexMissing(IndexUnavailable):
    pass


@dataclass(frozen=True)
class Manifest:
    format_version: int
    factory: str
    metric: str
    embedder: str
    dimension: int
    count: int
    source_hash: str
    built_at: float
    build_id: str
    nprobe: int
    faiss_version: str
    # Items in the collaborative model (0: fitted on no events) and the events it read;
    # absent in older builds.
    collaborative_items: int = 0
    collaborative_events: int = 0
    # Why this index type (absent in older builds).
    choice: str = ""


@dataclass(frozen=True)
class IndexChoice:
    factory: str
    nprobe: int  # 0: not an inverted index
    reason: str


def choose_index(
    count: int, dimension: int, memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB
) -> IndexChoice:
    """The index type for ``count`` vectors: exact when small, IVF above, IVF-PQ when the full
    vectors would not fit the memory budget."""
    if count < EXACT_SEARCH_LIMIT:
        return IndexChoice("Flat", 0, f"exact: {count:,} items < {EXACT_SEARCH_LIMIT:,}")
    # About 4 sqrt(n) lists (FAISS's rule of thumb), at most 1,024: at 100k items, 1,024 lists
    # searched 16 at a time were 3.5x faster than 256 lists 8 at a time and found more of the
    # exact top 120 (0.85 against 0.77; a recommendation searches that deep). More lists than
    # 1,024 would lengthen the training of a 1M build, which docs/PERFORMANCE.md measures.
    lists = min(MAX_LISTS, 2 ** round(math.log2(4 * math.sqrt(count))))
    # About 1.5% of the lists (at least 8). At 1M synthetic items, held-out queries of the same
    # catalog find 0.999 of the exact top 10 at nprobe 16 of 1,024, about 50x faster than exact
    # search; queries far from every cluster need more (scripts/bench_index.py,
    # docs/PERFORMANCE.md). Callers may pass their own per search.
    nprobe = max(8, lists // 64)
    # The lists keep the vectors in half precision: a search reads about 2.4 MB a query at
    # 100k items, so halving it nearly halves the time (measured at 100k: 6 queries 2.4 ->
    # 1.3 ms, the same recall; docs/PERFORMANCE.md).
    index_mb = count * dimension * HALF_PRECISION_BYTES / 2**20
    if index_mb <= memory_budget_mb:
        return IndexChoice(
            f"IVF{lists},SQfp16",
            nprobe,
            f"IVF: {count:,} items; their {index_mb:,.0f} MB of half-precision vectors fit the "
            f"{memory_budget_mb:,.0f} MB budget",
        )
    codes = _pq_codes(dimension)
    return IndexChoice(
        f"IVF{lists},PQ{codes}",
        nprobe,
        f"IVF-PQ: {index_mb:,.0f} MB of half-precision vectors exceed the "
        f"{memory_budget_mb:,.0f} MB budget; {codes}-byte codes, re-ranked exactly from the "
        "vectors on disk",
    )


def _pq_codes(dimension: int) -> int:
    """Bytes per PQ code: one per 8 dimensions (a divisor of the dimension, as FAISS needs)."""
    codes = max(1, dimension // 8)
    while dimension % codes:
        codes -= 1
    return codes


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
        self.gpu = gpu  # searches go there when set (service/gpu_search.py)
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


class SourceHash:
    """Identifies what an index was built from: item ids and the exact texts embedded."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, items: Sequence[Item]) -> list[str]:
        texts = [item.embedding_text() for item in items]
        for item, text in zip(items, texts):
            self._digest.update(f"{item.item_id}\x00{text}\x00".encode())
        return texts

    def hexdigest(self) -> str:
        return self._digest.hexdigest()[:16]


def catalog_hash(chunks: Iterable[Sequence[Item]]) -> str:
    source = SourceHash()
    for chunk in chunks:
        source.add(chunk)
    return source.hexdigest()


def build_index(
    chunks: Iterable[Sequence[Item]],
    embedder: Embedder,
    root: Path,
    progress: bool = True,
    interactions: Iterable[tuple[str, str]] = (),
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
) -> Manifest:
    """Embed every item, build the index into a new folder, then make it current. With
    ``interactions`` ((user id, item id) pairs) the collaborative model is fitted too.

    The catalog is read chunk by chunk and its vectors go straight to disk, so memory holds one
    chunk of items, the index and the item ids, however large the catalog."""
    import faiss

    # UTC time sorts builds; the random part keeps two builds in one second apart.
    build_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    builds = root / "builds"
    staging = builds / f".{build_id}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        item_ids, source_hash = _embed_to_disk(chunks, embedder, staging / "vectors.npy", progress)
        vectors = np.load(staging / "vectors.npy", mmap_mode="r")
        choice = choose_index(len(item_ids), embedder.dimension, memory_budget_mb)
        index = _fill_index(vectors, choice, progress)
        collaborative, events_read = _fit_collaborative(interactions, progress)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            factory=choice.factory,
            metric="inner_product",
            embedder=embedder.model_id,
            dimension=embedder.dimension,
            count=len(item_ids),
            source_hash=source_hash,
            built_at=time.time(),
            build_id=build_id,
            nprobe=choice.nprobe,
            faiss_version=faiss.__version__,
            collaborative_items=len(collaborative) if collaborative else 0,
            collaborative_events=events_read,
            choice=choice.reason,
        )
        faiss.write_index(index, str(staging / "index.faiss"))
        (staging / "item_ids.json").write_text(json.dumps(item_ids))
        if collaborative:
            collaborative.save(staging)
        (staging / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2))
        for path in staging.iterdir():
            _fsync(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # CURRENT still names the previous build
        raise
    os.replace(staging, builds / build_id)
    _fsync_dir(builds)
    _point_current(root, build_id)
    _prune(builds, keep=build_id)
    return manifest


def _embed_to_disk(
    chunks: Iterable[Sequence[Item]], embedder: Embedder, path: Path, progress: bool
) -> tuple[list[str], str]:
    """Embed the catalog into ``path`` (.npy); (item ids in row order, source hash)."""
    from tqdm import tqdm

    item_ids: list[str] = []
    source = SourceHash()
    with (
        VectorFile(path, embedder.dimension) as out,
        tqdm(desc="embedding items", unit="item", disable=not progress) as bar,
    ):
        for chunk in chunks:
            out.append(embedder.encode(source.add(chunk)))
            item_ids.extend(item.item_id for item in chunk)
            bar.update(len(chunk))
    if not item_ids:
        raise IndexMissing("the catalog is empty: add items before building the index")
    return item_ids, source.hexdigest()


def _fill_index(vectors: np.ndarray, choice: IndexChoice, progress: bool) -> Any:
    """Train the index on a random sample of the vectors, then add them all, a chunk at a time
    (each chunk is read from the memory-mapped file, so they never all sit in memory twice)."""
    import faiss
    from tqdm import tqdm

    index = faiss.index_factory(vectors.shape[1], choice.factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        lists = faiss.extract_index_ivf(index).nlist
        sample = min(len(vectors), lists * TRAINING_POINTS_PER_LIST)
        rows = np.sort(np.random.default_rng(0).choice(len(vectors), sample, replace=False))
        if progress:
            print(f"training {choice.factory} on {sample:,} vectors", file=sys.stderr)
        index.train(np.ascontiguousarray(vectors[rows]))
    with tqdm(total=len(vectors), desc="indexing", unit="item", disable=not progress) as bar:
        for start in range(0, len(vectors), ADD_CHUNK):
            part = np.ascontiguousarray(vectors[start : start + ADD_CHUNK])
            index.add(part)
            bar.update(len(part))
    return index


class VectorFile:
    """A float32 .npy file written a chunk of rows at a time. Its header is written again at
    the end with the final row count: the NPY format pads headers, so a fixed length holds any
    count and nothing is copied."""

    HEADER_BYTES = 128

    def __init__(self, path: Path, dimension: int) -> None:
        self.dimension = dimension
        self.rows = 0
        self._file = path.open("wb")
        self._file.write(self._header())

    def append(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype="<f4").reshape(-1, self.dimension)
        self._file.write(vectors.tobytes())
        self.rows += len(vectors)

    def __enter__(self) -> VectorFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.seek(0)
        self._file.write(self._header())
        self._file.close()

    def _header(self) -> bytes:
        shape = f"({self.rows}, {self.dimension})"
        text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
        # magic (6) + version (2) + header length (2) + the dictionary, padded, ending in \n
        text = text.ljust(self.HEADER_BYTES - 11) + "\n"
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")


def _fit_collaborative(
    interactions: Iterable[tuple[str, str]], progress: bool
) -> tuple[ItemModel | None, int]:
    """The collaborative model and the number of events it was fitted on."""
    from tqdm import tqdm

    read = 0

    def counted() -> Iterator[tuple[str, str]]:
        nonlocal read
        for pair in tqdm(interactions, desc="reading events", unit="event", disable=not progress):
            read += 1
            yield pair

    model = fit_item_model(counted())
    return model, read


def _point_current(root: Path, build_id: str) -> None:
    pointer = root / "CURRENT.tmp"
    pointer.write_text(build_id + "\n")
    _fsync(pointer)
    os.replace(pointer, root / "CURRENT")
    _fsync_dir(root)  # the rename itself must survive a power cut


def _prune(builds: Path, keep: str) -> None:
    """Keep the newest builds; remove partial folders left by a builder that was killed
    (older than an hour, so a build running elsewhere right now is left alone)."""
    for partial in builds.glob(".*.partial"):
        if time.time() - partial.stat().st_mtime > STALE_PARTIAL_SECONDS:
            shutil.rmtree(partial, ignore_errors=True)
    finished = sorted(p for p in builds.iterdir() if not p.name.startswith("."))
    for old in [p for p in finished if p.name != keep][: -(KEEP_BUILDS - 1) or None]:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def current_build(root: Path) -> Path:
    pointer = root / "CURRENT"
    if not pointer.is_file():
        raise IndexMissing(f"no item index in {root}: run `iprof build-index` (or `iprof demo`)")
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise IndexMismatch(f"{pointer} is unreadable ({error}): rebuild the index") from error
    folder = root / "builds" / name
    if not name or "/" in name or not (folder / "manifest.json").is_file():
        raise IndexMissing(f"{pointer} names {name!r}, which is missing: rebuild the index")
    return folder


def read_manifest(folder: Path) -> Manifest:
    try:
        return Manifest(**json.loads((folder / "manifest.json").read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as error:
        raise IndexMismatch(
            f"unreadable manifest in {folder}: {error}; rebuild the index"
        ) from error


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
