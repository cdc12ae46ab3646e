"""The embedder on CPU: torch against ONNX Runtime (float and int8), in the same run.

Usage:
    python scripts/bench/bench_embed.py                      # 2,000 synthetic catalog texts
    python scripts/bench/bench_embed.py --texts 5000 --repeats 5

Each backend encodes the same texts (the items' embedding texts, as an index build does);
medians of --repeats runs, the backends taking turns. Quality against torch: the cosine of each
text's vector to its torch vector, and how many of each text's 10 nearest neighbours among the
texts stay the same (what retrieval sees). The recommendation-level check is the evaluation
run with IPROF_EMBED_BACKEND set (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from service.embedding.encoder import Embedder, load_embedder
from service.evaluation.synthetic import synthetic_items

BACKENDS = ("torch", "onnx", "onnx-int8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    texts = [i.embedding_text() for i in next(synthetic_items(args.texts, chunk=args.texts))]
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as cache:
        embedders = {
            backend: load_embedder(None, args.batch_size, backend, cache=Path(cache))
            for backend in BACKENDS
        }
        seconds: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
        vectors: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for backend, embedder in embedders.items():
                started = time.perf_counter()
                vectors[backend] = embedder.encode(texts)
                seconds[backend].append(time.perf_counter() - started)
    _print_table(texts, seconds, vectors, args.repeats, embedders["torch"])
    return 0


def _print_table(
    texts: list[str],
    seconds: dict[str, list[float]],
    vectors: dict[str, np.ndarray],
    repeats: int,
    reference: Embedder,
) -> None:
    base = float(np.median(seconds["torch"]))
    truth = _neighbours(vectors["torch"])
    print(f"\n{len(texts):,} texts, {reference.model_id}, median of {repeats}\n")
    print("| backend | seconds | texts/s | vs torch | cosine to torch (min / mean) | same 10 NN |")
    print("|---|---:|---:|---:|---:|---:|")
    for backend, runs in seconds.items():
        median = float(np.median(runs))
        cosine = (vectors[backend] * vectors["torch"]).sum(axis=1)
        overlap = np.mean(
            [len(set(a) & set(b)) / 10 for a, b in zip(_neighbours(vectors[backend]), truth)]
        )
        print(
            f"| {backend} | {median:.2f} | {len(texts) / median:,.0f} | {base / median:.2f}x "
            f"| {cosine.min():.4f} / {cosine.mean():.4f} | {overlap:.3f} |"
        )


def _neighbours(vectors: np.ndarray) -> list[list[int]]:
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1)[:, :10].tolist()


if __name__ == "__main__":
    sys.exit(main())
