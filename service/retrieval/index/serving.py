"""The index being served: a rebuild swaps in the new one with a single assignment, and a
build made elsewhere (the CLI, another worker) is picked up from CURRENT within seconds."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Protocol

from service.embedding.encoder import Embedder
from service.retrieval.index.build import build_index
from service.retrieval.index.choice import DEFAULT_MEMORY_BUDGET_MB
from service.retrieval.index.folders import IndexUnavailable, Manifest
from service.retrieval.index.search import ItemIndex, load_index
from service.store import Store

log = logging.getLogger(__name__)


class IndexBuildFailed(RuntimeError):
    pass


class ServedIndex(Protocol):
    """What a reader of the index needs: the index to search now (IndexUnavailable when none)."""

    def get(self) -> ItemIndex: ...


# How often a reader looks at CURRENT for a build made elsewhere (the CLI, another worker).
RELOAD_CHECK_SECONDS = 2.0


class IndexHolder:
    """The index being served. A rebuild swaps in the new one with a single assignment, so a
    search in flight finishes on the old index and none ever fails for the swap."""

    def __init__(
        self,
        root: Path,
        embedder: Embedder,
        memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
        search_on_gpu: bool = False,
    ) -> None:
        self.root = root
        self.embedder = embedder
        self.memory_budget_mb = memory_budget_mb
        self.search_on_gpu = search_on_gpu
        self._index: ItemIndex | None = None
        self.problem: str | None = "not loaded yet"
        self._rebuild_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._checked_at = 0.0
        self._tried_build: str | None = None
        self._watching: threading.Event | None = None

    def get(self) -> ItemIndex:
        self._follow_current()
        index = self._index
        if index is None:
            raise IndexUnavailable(self.problem or "no item index loaded")
        return index

    def _follow_current(self) -> None:
        """Pick up a build that `iprof build-index` or another worker made current."""
        if time.monotonic() - self._checked_at < RELOAD_CHECK_SECONDS:
            return
        if not self._reload_lock.acquire(blocking=False):
            return  # another thread is looking already; serve what we have
        try:
            self._checked_at = time.monotonic()
            try:
                build_id = (self.root / "CURRENT").read_text().strip()
            except (OSError, ValueError):
                return  # load() will say what is wrong with it
            if build_id != self._tried_build:
                self.load()
        finally:
            self._reload_lock.release()

    @property
    def loaded(self) -> bool:
        return self._index is not None

    def serving_build(self) -> str | None:
        """The id of the build being served, after looking for a newer one made elsewhere
        (`/ready` shows it)."""
        self._follow_current()
        index = self._index
        return index.manifest.build_id if index is not None else None

    def load(self) -> None:
        try:
            self._tried_build = (self.root / "CURRENT").read_text().strip()
        except (OSError, ValueError):  # missing, or not text
            self._tried_build = None
        previous = self._index.manifest.build_id if self._index is not None else None
        try:
            self._index = load_index(self.root, self.embedder, self.search_on_gpu)
            self.problem = None
        except IndexUnavailable as error:
            self.problem = str(error)
            log.warning("item index not loaded: %s", error)
            return
        build = self._index.manifest.build_id
        if previous is None:
            log.info("serving index build %s", build)
        elif build != previous:
            log.info("serving index build %s (was %s)", build, previous)

    def watch(self) -> None:
        """Look for a build made elsewhere every RELOAD_CHECK_SECONDS from a thread of its own,
        so an idle instance is current too (requests also look, on their way)."""
        if self._watching is not None:
            return
        stop = self._watching = threading.Event()

        def follow() -> None:
            while not stop.wait(RELOAD_CHECK_SECONDS):
                try:
                    self._follow_current()
                except Exception:  # never let the watcher die: the next look tries again
                    log.exception("looking for a new index build failed")

        threading.Thread(target=follow, name="index-watch", daemon=True).start()

    def stop_watching(self) -> None:
        if self._watching is not None:
            self._watching.set()
            self._watching = None

    def rebuild(self, store: Store, progress: bool = False) -> Manifest:
        """Build from the stored catalog and serve it; on any failure the previous index keeps
        serving and IndexBuildFailed says so. The collaborative model's settings are chosen on
        the stored events (service/retrieval/collaborative_tuning.py)."""
        with self._rebuild_lock:
            try:
                manifest = build_index(
                    store.items.chunks(),
                    self.embedder,
                    self.root,
                    progress,
                    interactions=store.events.user_items(),
                    memory_budget_mb=self.memory_budget_mb,
                )
            except IndexUnavailable:
                raise
            except Exception as error:
                log.exception("index rebuild failed")
                raise IndexBuildFailed(
                    f"the index rebuild failed ({type(error).__name__}); the previous index "
                    "keeps serving"
                ) from error
            self.load()
            return manifest
