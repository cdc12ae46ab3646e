"""The service's parts, built once (by the app's lifespan or by a CLI command) and shared."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from service.app.ratelimit import RateLimiter
from service.core.config import Settings
from service.embedding.encoder import Embedder, load_embedder
from service.profiling.profiler import Profiler, RefreshReport
from service.retrieval.index.serving import IndexHolder
from service.retrieval.recommender import FusionWeights, Recommender
from service.store import Store
from service.store.connection import Migrations
from service.summarizers.base import Summarizer
from service.summarizers.factory import build_summarizer

log = logging.getLogger(__name__)


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
    migrations: Migrations | None = None,
    lazy_embedder: bool = False,
) -> Services:
    """``migrations``: what opening the store does with its schema (default: what
    ``IPROF_MIGRATE`` says for a process that may migrate); ``lazy_embedder``: load the bundled
    embedder on its first use, not now (the CLI: most commands never encode a text)."""
    store = Store(
        settings.store_target,
        settings.database_pool,
        settings.database_timeout_s,
        migrations or settings.migrations,
    )
    embedder = embedder or load_embedder(
        settings.embed_model,
        settings.embed_batch_size,
        settings.embed_backend,
        cache=settings.data_dir / "models",
        lazy=lazy_embedder,
    )
    summarizer = summarizer or build_summarizer(settings.llm, encode=embedder.encode)
    retrieval, api = settings.retrieval, settings.api
    holder = IndexHolder(
        retrieval.index_dir, embedder, retrieval.index_memory_mb, retrieval.search_on_gpu
    )
    if load_item_index:
        holder.load()
    return Services(
        settings=settings,
        store=store,
        embedder=embedder,
        summarizer=summarizer,
        profiler=Profiler(store, summarizer, embedder, settings.profiling),
        recommender=Recommender(
            store,
            embedder,
            holder,
            FusionWeights(interests=retrieval.fusion_interests),
            drift_earlier_weight=retrieval.drift_earlier_weight,
            new_item_boost=retrieval.new_item_boost,
        ),
        index=holder,
        limiter=RateLimiter(api.rate_limit_per_second, api.rate_limit_burst),
    )
