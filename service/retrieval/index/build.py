"""Building an item index: embed the catalog to disk chunk by chunk, fill the FAISS index, fit
the collaborative model on the events, write it all into a new build folder and swap it in."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from service.core.records import Item
from service.embedding.encoder import Embedder
from service.retrieval.collaborative import CollaborativeConfig, ItemModel
from service.retrieval.collaborative_fit import fit_item_model, histories_of
from service.retrieval.collaborative_tuning import Tuned, tune
from service.retrieval.index.choice import DEFAULT_MEMORY_BUDGET_MB, IndexChoice, choose_index
from service.retrieval.index.folders import (
    FORMAT_VERSION,
    IndexMissing,
    Manifest,
    fsync_dir,
    fsync_file,
    point_current,
    prune_builds,
)

# k-means on 64 points per list: FAISS asks for at least 39, and more buys little but time.
TRAINING_POINTS_PER_LIST = 64


ADD_CHUNK = 65_536


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
    interactions: Iterable[tuple[str, str, float]] = (),
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    collaborative_config: CollaborativeConfig | None = None,
) -> Manifest:
    """Embed every item, build the index into a new folder, then make it current. With
    ``interactions`` ((user id, item id, time) triples) the collaborative model is fitted too,
    with ``collaborative_config`` where given, else with the settings chosen on those events.

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
        index = fill_index(vectors, choice, progress)
        collaborative, events_read, tuned = _fit_collaborative(
            interactions, progress, collaborative_config
        )
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
            collaborative_config=asdict(collaborative.config) if collaborative else None,
            collaborative_tuning=(
                {"held_out_users": tuned.held_out_users, "tried": tuned.tried} if tuned else None
            ),
        )
        faiss.write_index(index, str(staging / "index.faiss"))
        (staging / "item_ids.json").write_text(json.dumps(item_ids))
        if collaborative:
            collaborative.save(staging)
        (staging / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2))
        for path in staging.iterdir():
            fsync_file(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # CURRENT still names the previous build
        raise
    os.replace(staging, builds / build_id)
    fsync_dir(builds)
    point_current(root, build_id)
    prune_builds(builds, keep=build_id)
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


def fill_index(vectors: np.ndarray, choice: IndexChoice, progress: bool) -> Any:
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
    interactions: Iterable[tuple[str, str, float]],
    progress: bool,
    config: CollaborativeConfig | None,
) -> tuple[ItemModel | None, int, Tuned | None]:
    """The collaborative model, the number of events it was fitted on and, where its settings
    were chosen here, how."""
    from tqdm import tqdm

    read = 0

    def counted() -> Iterator[tuple[str, str, float]]:
        nonlocal read
        for triple in tqdm(interactions, desc="reading events", unit="event", disable=not progress):
            read += 1
            yield triple

    histories = histories_of(counted())
    tuned = None
    if config is None:
        if progress:
            print(
                f"choosing the collaborative model's settings on {read:,} events", file=sys.stderr
            )
        tuned = tune(histories)
        config = tuned.config
    return fit_item_model(histories, config), read, tuned
