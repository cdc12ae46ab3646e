"""Which FAISS index a catalog gets (exact, IVF with half-precision lists, or IVF-PQ over a
memory budget), and why."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Below this many items exact search is fast enough (a few ms) and has perfect recall.
EXACT_SEARCH_LIMIT = 50_000


MAX_LISTS = 1_024


# Vectors in memory (half precision) up to this size; above it the index keeps PQ codes of a
# byte per 8 dimensions (16x smaller) and re-ranks its candidates exactly from the vectors on
# disk.
DEFAULT_MEMORY_BUDGET_MB = 4_096


HALF_PRECISION_BYTES = 2


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
    # About 4 sqrt(n) lists (FAISS's rule of thumb), at most 1,024: more lists would lengthen
    # the training of a 1M build (docs/PERFORMANCE.md, "Index build and search at 1M items").
    lists = min(MAX_LISTS, 2 ** round(math.log2(4 * math.sqrt(count))))
    # About 1.5% of the lists (at least 8): nearly all of the exact top 10 for queries like the
    # catalog's, far faster than exact search; queries far from every cluster need more
    # (scripts/bench/bench_index.py, docs/PERFORMANCE.md). Callers may pass their own per search.
    nprobe = max(8, lists // 64)
    # The lists keep the vectors in half precision: a search is bound by the bytes it reads, so
    # halving them nearly halves its time at the same recall (docs/PERFORMANCE.md).
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
