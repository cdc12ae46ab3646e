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
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .collaborative import ItemModel, fit_item_model
from .embed import Embedder
from .models import Item

FORMAT_VERSION = 1
# Below this many items exact search is fast enough (a few ms) and has perfect recall.
EXACT_SEARCH_LIMIT = 50_000
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


def choose_factory(count: int) -> tuple[str, int]:
    """(FAISS factory string, default nprobe) for a catalog of ``count`` items."""
    if count < EXACT_SEARCH_LIMIT:
        return "Flat", 0
    lists = 2 ** round(math.log2(4 * math.sqrt(count)))
    return f"IVF{lists},Flat", max(8, lists // 32)


class ItemIndex:
    def __init__(
        self,
        index: Any,
        item_ids: list[str],
        vectors: np.ndarray,
        manifest: Manifest,
        collaborative: ItemModel | None = None,
    ) -> None:
        self._index = index
        self.item_ids = item_ids
        self.vectors = vectors
        self.manifest = manifest
        self.collaborative = collaborative
        self._rows = {item_id: row for row, item_id in enumerate(item_ids)}

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def search(
        self, queries: np.ndarray, k: int, nprobe: int | None = None
    ) -> list[list[tuple[str, float]]]:
        """Top ``k`` (item id, cosine similarity) per query row."""
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, len(self.item_ids))
        params = None
        if self.manifest.nprobe:
            # Per call, never set on the shared index: concurrent searches stay independent.
            params = faiss.SearchParametersIVF(nprobe=nprobe or self.manifest.nprobe)  # type: ignore[call-arg]
        scores, rows = self._index.search(queries, k, params=params)  # type: ignore[attr-defined]
        return [
            [(self.item_ids[r], float(s)) for r, s in zip(row_ids, row_scores) if r >= 0]
            for row_ids, row_scores in zip(rows, scores)
        ]

    def vectors_of(self, item_ids: Iterable[str]) -> np.ndarray:
        """Stored vectors of the given items; items not in the index (added since the last
        build) are skipped, so the result may have fewer rows, even none."""
        rows = [self._rows[i] for i in item_ids if i in self._rows]
        return np.asarray(self.vectors[rows], dtype=np.float32).reshape(
            len(rows), self.manifest.dimension
        )


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
) -> Manifest:
    """Embed every item, build the index into a new folder, then make it current. With
    ``interactions`` ((user id, item id) pairs) the collaborative model is fitted too."""
    import faiss
    from tqdm import tqdm

    item_ids: list[str] = []
    parts: list[np.ndarray] = []
    source = SourceHash()
    with tqdm(desc="embedding items", unit="item", disable=not progress) as bar:
        for chunk in chunks:
            texts = source.add(chunk)
            parts.append(embedder.encode(texts))
            item_ids.extend(item.item_id for item in chunk)
            bar.update(len(chunk))
    if not item_ids:
        raise IndexMissing("the catalog is empty: add items before building the index")
    vectors = np.concatenate(parts)
    factory, nprobe = choose_factory(len(item_ids))
    index = faiss.index_factory(embedder.dimension, factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    collaborative, events_read = _fit_collaborative(interactions, progress)
    # UTC time sorts builds; the random part keeps two builds in one second apart.
    build_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        factory=factory,
        metric="inner_product",
        embedder=embedder.model_id,
        dimension=embedder.dimension,
        count=len(item_ids),
        source_hash=source.hexdigest(),
        built_at=time.time(),
        build_id=build_id,
        nprobe=nprobe,
        faiss_version=faiss.__version__,
        collaborative_items=len(collaborative) if collaborative else 0,
        collaborative_events=events_read,
    )
    _write_build(root, ItemIndex(index, item_ids, vectors, manifest, collaborative))
    return manifest


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


def _write_build(root: Path, built: ItemIndex) -> None:
    import faiss

    manifest = built.manifest
    builds = root / "builds"
    staging = builds / f".{manifest.build_id}.partial"
    final = builds / manifest.build_id
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        faiss.write_index(built._index, str(staging / "index.faiss"))
        (staging / "item_ids.json").write_text(json.dumps(built.item_ids))
        np.save(staging / "vectors.npy", built.vectors)
        if built.collaborative:
            built.collaborative.save(staging)
        (staging / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2))
        for path in staging.iterdir():
            _fsync(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # CURRENT still names the previous build
        raise
    os.replace(staging, final)
    _fsync_dir(builds)
    _point_current(root, manifest.build_id)
    _prune(builds, keep=manifest.build_id)


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


def load_index(root: Path, embedder: Embedder) -> ItemIndex:
    """Load the current build; refuse one made for another embedder or format, or whose files
    do not agree with its manifest."""
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
    return ItemIndex(index, item_ids, vectors, manifest, collaborative)


def _mismatch(manifest: Manifest, embedder: Embedder) -> str | None:
    if manifest.format_version != FORMAT_VERSION:
        return f"has format {manifest.format_version}, this service reads {FORMAT_VERSION}"
    if manifest.embedder != embedder.model_id or manifest.dimension != embedder.dimension:
        return (
            f"was built with {manifest.embedder} (dimension {manifest.dimension}) but the "
            f"service embeds with {embedder.model_id} (dimension {embedder.dimension})"
        )
    return None
