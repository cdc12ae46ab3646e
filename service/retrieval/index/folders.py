"""Index build folders: the manifest, the CURRENT pointer swapped atomically, pruning, fsync.

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

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = 1


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
    # The collaborative model's settings and, where the build chose them on its events, each
    # setting tried with its NDCG@10 on the held-out part (retrieval/collaborative_tuning.py).
    collaborative_config: dict | None = None
    collaborative_tuning: dict | None = None


def point_current(root: Path, build_id: str) -> None:
    pointer = root / "CURRENT.tmp"
    pointer.write_text(build_id + "\n")
    fsync_file(pointer)
    os.replace(pointer, root / "CURRENT")
    fsync_dir(root)  # the rename itself must survive a power cut


def prune_builds(builds: Path, keep: str) -> None:
    """Keep the newest builds; remove partial folders left by a builder that was killed
    (older than an hour, so a build running elsewhere right now is left alone)."""
    for partial in builds.glob(".*.partial"):
        if time.time() - partial.stat().st_mtime > STALE_PARTIAL_SECONDS:
            shutil.rmtree(partial, ignore_errors=True)
    finished = sorted(p for p in builds.iterdir() if not p.name.startswith("."))
    for old in [p for p in finished if p.name != keep][: -(KEEP_BUILDS - 1) or None]:
        shutil.rmtree(old, ignore_errors=True)


def fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_file(path: Path) -> None:
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
