"""The service's parts, built once (by the app's lifespan or by a CLI command) and shared."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.app.ratelimit import RateLimiter
from service.core.config import Settings
from service.embedding.encoder import Embedder, load_embedder
from service.profiling.profiler import Profiler, RefreshReport
from service.retrieval.builds import IndexUnavailable, Manifest
from service.retrieval.index import ItemIndex, load_index
from service.retrieval.index_build import build_index
from service.retrieval.index_choice import DEFAULT_MEMORY_BUDGET_MB
from service.retrieval.recommender import FusionWeights, Recommender
from service.store import Store
from service.summarizers.base import Summarizer
from service.summarizers.factory import build_summarizer

log = logging.getLogger(__name__)


class IndexBuildFailed(RuntimeError):
    pass


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
        try:
            self._index = load_index(self.root, self.embedder, self.search_on_gpu)
            self.problem = None
        except IndexUnavailable as error:
            self.problem = str(error)
            log.warning("item index not loaded: %s", error)

    def rebuild(self, store: Store, progress: bool = False) -> Manifest:
        """Build from the stored catalog and serve it; on any failure the previous index keeps
        serving and IndexBuildFailed says so. The collaborative model's settings are chosen on
        the stored events (service/retrieval/collaborative_tuning.py)."""
        with self._rebuild_lock:
            try:
                manifest = build_index(
                    store.iter_items(),
                    self.embedder,
                    self.root,
                    progress,
                    interactions=store.iter_user_items(),
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


@dataclass
class Services:
    settings: Settings
    store: Store
    embedder: Embedder
    summarizer: Summarizer
    profiler: Profiler
    recommender: Recommender
    index: IndexHolder
    limiter: RateLimiter

    def refresh_users(
        self,
        user_ids: Sequence[str],
        force: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> RefreshReport:
        """Profiles up to date for these users, then, when an index is loaded, their
        recommendation candidate lists, so a request finds both ready (`iprof refresh`)."""
        prepare = self.recommender.prepare if self.index.loaded else None
        return self.profiler.refresh_users(user_ids, force, on_progress, then=prepare)

    def close(self) -> None:
        self.recommender.close()
        self.store.close()


def build_services(
    settings: Settings,
    *,
    summarizer: Summarizer | None = None,
    embedder: Embedder | None = None,
    load_item_index: bool = True,
) -> Services:
    store = Store(settings.store_target, settings.database_pool)
    embedder = embedder or load_embedder(
        settings.embed_model,
        settings.embed_batch_size,
        settings.embed_backend,
        cache=settings.data_dir / "models",
    )
    summarizer = summarizer or build_summarizer(settings, encode=embedder.encode)
    holder = IndexHolder(
        settings.index_dir, embedder, settings.index_memory_mb, settings.search_on_gpu
    )
    if load_item_index:
        holder.load()
    return Services(
        settings=settings,
        store=store,
        embedder=embedder,
        summarizer=summarizer,
        profiler=Profiler(store, summarizer, embedder, settings),
        recommender=Recommender(
            store,
            embedder,
            holder.get,
            FusionWeights(interests=settings.fusion_interests),
            drift_earlier_weight=settings.drift_earlier_weight,
            new_item_boost=settings.new_item_boost,
        ),
        index=holder,
        limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
    )
