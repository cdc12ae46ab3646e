"""Index build and search at scale, each against its baseline in the same run.

Usage:
    python scripts/bench/bench_index.py                          # 1M synthetic items, static-minilm
    python scripts/bench/bench_index.py --items 20000 --embedder minilm      # the real model
    python scripts/bench/bench_index.py --items 200000 --pq  # also an IVF-PQ build of the vectors

Build: `build_index` (the service's code: streamed chunks, vectors to disk, index type by size)
against plain sentence-transformers `encode` of the same texts. Search: the built index at
several nprobe against exact search (FAISS Flat), one query per call as the service searches,
on one thread: recall@10 on held-out items of the same catalog (the target's queries) and on
items of an unrelated catalog (a stress case), and queries/s. The same lists with
full-precision vectors (`IVF<n>,Flat`) are measured beside the half-precision ones the service
builds, and with --pq the IVF-PQ index a tight memory budget picks.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from service.embedding.encoder import STATIC_MINILM, SentenceTransformerEmbedder, load_embedder
from service.evaluation.synthetic import synthetic_items
from service.retrieval.index.build import build_index
from service.retrieval.index.choice import choose_index
from service.retrieval.index.search import load_index

QUERIES = 1_000
TIMED_QUERIES = 300


def bench_build(embedder: SentenceTransformerEmbedder, count: int, folder: Path) -> float:
    # Generated up front, so neither side pays for making up the catalog.
    chunks = list(synthetic_items(count))
    texts = [item.embedding_text() for chunk in chunks for item in chunk]
    started = time.perf_counter()
    embedder.encode(texts)
    encode_s = time.perf_counter() - started
    del texts
    started = time.perf_counter()
    manifest = build_index(chunks, embedder, folder, progress=True)
    build_s = time.perf_counter() - started
    del chunks
    print(f"\n## Build: {count:,} items, {embedder.model_id}, {manifest.factory}")
    print(f"choice: {manifest.choice}\n")
    print("| step | seconds | items/s | vs encode |")
    print("|---|---:|---:|---:|")
    print(f"| plain `encode` | {encode_s:.1f} | {count / encode_s:,.0f} | 1.00 |")
    print(f"| `build_index` | {build_s:.1f} | {count / build_s:,.0f} | {encode_s / build_s:.2f} |")
    return encode_s / build_s


def bench_search(embedder: SentenceTransformerEmbedder, folder: Path, pq: bool) -> None:
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # as in the server: one thread per search
    try:
        _search_tables(embedder, folder, pq)
    finally:
        faiss.omp_set_num_threads(threads)


def _search_tables(embedder: SentenceTransformerEmbedder, folder: Path, pq: bool) -> None:
    import faiss

    index = load_index(folder, embedder)
    count = len(index)
    query_sets = {
        # The target's queries: items of the same catalog that were not indexed.
        "held-out": _encoded(embedder, synthetic_items(QUERIES, first=count, chunk=QUERIES)),
        # A stress case: items of another catalog (other topics) fall between the clusters.
        "other topics": _encoded(embedder, synthetic_items(QUERIES, seed=1, chunk=QUERIES)),
    }
    vectors = np.ascontiguousarray(index.vectors)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    truths = {name: exact.search(queries, 10)[1] for name, queries in query_sets.items()}
    exact_qps = _qps(lambda q: exact.search(q, 10), query_sets["held-out"])
    lists = int(index.manifest.factory.split(",")[0][3:]) if index.manifest.nprobe else 0
    print(f"\n## Search: {count:,} items, {index.manifest.factory}, k=10, one thread")
    print(f"{QUERIES} queries a set for recall; {TIMED_QUERIES} held-out ones timed, one a call\n")
    print("| index | nprobe | recall@10 held-out | recall@10 other topics | queries/s | vs exact |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| Flat (exact) | - | 1.000 | 1.000 | {exact_qps:,.0f} | 1.0x |")
    candidates = [n for n in (4, 8, 16, 32, 64, 128) if n <= lists]
    for nprobe in candidates:
        _search_row(index, query_sets, truths, nprobe, exact_qps, "")
    gpu_index = _on_gpu(index)
    if gpu_index is not None:
        probes = None if gpu_index.gpu.exact else index.manifest.nprobe
        note = f" on GPU, {gpu_index.gpu.name}"
        _search_row(gpu_index, query_sets, truths, probes, exact_qps, note)
    if not lists:
        return
    # The same lists with full-precision vectors: what the half-precision ones are measured by.
    full = _rebuilt_as(index, index.manifest.factory.replace("SQfp16", "Flat"), "full precision")
    for nprobe in candidates:
        _search_row(full, query_sets, truths, nprobe, exact_qps, "")
    if pq:
        choice = choose_index(len(index), index.manifest.dimension, memory_budget_mb=1)
        pq_index = _rebuilt_as(index, choice.factory, choice.reason)
        for nprobe in candidates:
            _search_row(pq_index, query_sets, truths, nprobe, exact_qps, " (re-ranked)")


def _on_gpu(index):  # type: ignore[no-untyped-def]
    """The index as the service searches it where there is a GPU (service/retrieval/index/gpu.py);
    None without one."""
    from service.retrieval.index import search as itemindex
    from service.retrieval.index.gpu import gpu_search

    found = gpu_search(index._index, index.vectors, index.manifest.nprobe)
    if found is None:
        return None
    return itemindex.ItemIndex(
        index._index, index.item_ids, index.vectors, index.manifest, gpu=found
    )


    # type: ignore[no-untyped-def]
def _encoded(embedder: SentenceTransformerEmbedder, chunks) -> np.ndarray:
    return embedder.encode([item.embedding_text() for chunk in chunks for item in chunk])


def _recall(index, found, truth) -> float:  # type: ignore[no-untyped-def]
    rows = index._rows
    return float(
        np.mean(
            [
                len({rows[i] for i, _ in hits} & set(t.tolist())) / 10
                for hits, t in zip(found, truth)
            ]
        )
    )


    # type: ignore[no-untyped-def]
def _search_row(index, query_sets, truths, nprobe, exact_qps, note) -> None:
    recalls = [
        _recall(index, index.search(queries, 10, nprobe=nprobe), truths[name])
        for name, queries in query_sets.items()
    ]
    qps = _qps(lambda q: index.search(q, 10, nprobe=nprobe), query_sets["held-out"])
    default = " (default)" if nprobe == index.manifest.nprobe else ""
    probed = "-" if nprobe is None else f"{nprobe}{default}"
    print(
        f"| {index.manifest.factory}{note} | {probed} | {recalls[0]:.3f} "
        f"| {recalls[1]:.3f} | {qps:,.0f} | {qps / exact_qps:.1f}x |"
    )


def _rebuilt_as(index, factory: str, reason: str):  # type: ignore[no-untyped-def]
    """The same vectors built into another index type (``factory``), as the service would."""
    from service.retrieval.index import build as index_build
    from service.retrieval.index import choice as index_choice
    from service.retrieval.index import folders as builds
    from service.retrieval.index import search as itemindex

    choice = index_choice.IndexChoice(factory, index.manifest.nprobe, reason)
    started = time.perf_counter()
    built = index_build.fill_index(index.vectors, choice, progress=True)
    print(f"\n{factory} trained and filled in {time.perf_counter() - started:.0f} s")
    manifest = builds.Manifest(**{**index.manifest.__dict__, "factory": factory, "choice": reason})
    return itemindex.ItemIndex(built, index.item_ids, index.vectors, manifest)


def _qps(search, queries: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    timings = []
    for row in range(TIMED_QUERIES):
        started = time.perf_counter()
        search(queries[row : row + 1])
        timings.append(time.perf_counter() - started)
    return 1.0 / float(np.median(timings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument(
        "--embedder", default=STATIC_MINILM, help="static-minilm (default) or minilm (the real one)"
    )
    parser.add_argument("--pq", action="store_true", help="also measure an IVF-PQ index")
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    embedder = load_embedder(None if args.embedder == "minilm" else args.embedder)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        bench_build(embedder, args.items, folder)
        bench_search(embedder, folder, args.pq)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
