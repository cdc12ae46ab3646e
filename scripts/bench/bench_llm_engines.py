"""The real SmolLM2 on every engine, side by side: windows/s, new tokens/s, time to the first
token and peak memory, against what the CPU's matrix throughput allows.

Usage:
    python scripts/bench/bench_llm_engines.py                        # all engines, batch 1,4,16
    python scripts/bench/bench_llm_engines.py --engines llama-cpp,transformers-nf4 --batches 1,16
    python scripts/bench/bench_llm_engines.py --out docs/llm-engines.json

Each engine runs in a process of its own (so its peak memory is its own) on the same demo
windows (16 of ``bench_summarize.demo_windows``; every cell profiles all 16, in batches of its
size, after a warm-up on another window), through the service's ``summarize`` with the grammar
on, as profiles are made: the answer closes on its own, and tokens/s counts the tokens
generated. Cells are medians of ``--repeats`` runs. Time to the first token is a one-window
run with ``max_new_tokens`` 1: the prompt's evaluation, mostly.

The limit: a forward pass costs about 2 x parameters FLOPs a token, so a window costs
2 x parameters x (prompt + answer tokens); the machine's throughput is a float32 matrix
multiply measured in the same run (torch, every core). "share of the limit" is the FLOPs an
engine spends per second over that throughput: how close it comes to what the CPU can do.
(llama.cpp evaluates the start every row of a batch shares, the system prompt and the example,
once, so it computes less than the window's FLOPs counted here: its share can pass 100%.)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ENGINES = ("transformers-none", "transformers-nf4", "llama-cpp")
WINDOWS = 16  # every cell profiles the same 16 demo windows, in batches of its size


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """float32 GFLOPS of a square matrix multiply on every core (median of ``repeats``)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times) / 1e9


def smollm2_parameters() -> int:
    """The parameters a token passes through (the tied embedding counted once, as the output
    layer it also is), read from the GGUF's tensors."""
    from gguf import GGUFReader

    from service.summarizers.llm.bundled import BUNDLED

    reader = GGUFReader(BUNDLED["smollm2"].gguf_path())
    return int(sum(int(tensor.n_elements) for tensor in reader.tensors))


def load(engine: str, data_dir: Path, max_new_tokens: int) -> Any:
    from service.core.config import Settings
    from service.summarizers.factory import build_summarizer
    from service.summarizers.llm.summarizer import LLMSummarizer

    backend, _, quant = engine.partition("-")
    settings = Settings(
        data_dir=data_dir,
        embed_model="hashing",
        llm_model="smollm2",
        llm_backend="llama-cpp" if backend == "llama" else "transformers",
        llm_quant=quant if backend == "transformers" else "nf4",
        llm_max_new_tokens=max_new_tokens,
        llm_timeout_s=3_600,
    )
    summarizer = build_summarizer(settings.llm)
    if not isinstance(summarizer, LLMSummarizer):
        raise SystemExit(f"{engine} did not load: {getattr(summarizer, 'problem', summarizer)}")
    return summarizer


def measure_engine(engine: str, batches: list[int], repeats: int, data_dir: Path) -> dict:
    """One engine's cells, every cell the same ``WINDOWS`` windows in batches of its size;
    run in a child process (``--child``)."""
    from scripts.bench.bench_summarize import demo_windows

    summarizer = load(engine, data_dir, max_new_tokens=384)
    windows = demo_windows(WINDOWS + 1)
    summarizer.summarize(windows[WINDOWS:])  # warm-up on another window: kernels, token texts
    windows = windows[:WINDOWS]
    cells = []
    for batch in batches:
        summarizer.batch_size, summarizer.batch_tokens = batch, 10**9  # batches of exactly b
        times, summaries = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            summaries = summarizer.summarize(windows)
            times.append(time.perf_counter() - started)
        tokens = [s.provenance["tokens"] for s in summaries]
        cells.append(
            {
                "batch": batch,
                "seconds": statistics.median(times),
                "prompt_tokens": sum(t["prompt"] for t in tokens),
                "new_tokens": sum(t["generated"] for t in tokens),
                "passed": sum(s.provenance["fallback_reason"] is None for s in summaries),
            }
        )
    summarizer.max_new_tokens = 1
    started = time.perf_counter()
    summarizer.summarize(windows[:1])
    first_token_s = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"engine": engine, "cells": cells, "first_token_s": first_token_s, "peak_mb": peak_mb}


def run_child(engine: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", engine, "--batches", args.batches]
    command += ["--repeats", str(args.repeats), "--data-dir", str(args.data_dir)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def print_table(results: list[dict], gflops: float, parameters: int) -> None:
    print(
        f"\nmatrix multiply: {gflops:.1f} GFLOPS (float32, every core); {parameters:,} parameters"
    )
    print(
        "\n| engine | batch | seconds | windows/s | new tokens/s | prompt + answer tokens a window"
        " | pass | share of the limit | vs transformers-nf4 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    baseline = {
        c["batch"]: WINDOWS / c["seconds"]
        for r in results
        if r["engine"] == "transformers-nf4"
        for c in r["cells"]
    }
    for result in results:
        for cell in result["cells"]:
            batch, seconds = cell["batch"], cell["seconds"]
            tokens = (cell["prompt_tokens"] + cell["new_tokens"]) / WINDOWS
            share = 2 * parameters * tokens * WINDOWS / seconds / (gflops * 1e9)
            rate = WINDOWS / seconds
            versus = f"{rate / baseline[batch]:.1f}x" if batch in baseline else "-"
            print(
                f"| {result['engine']} | {batch} | {seconds:.2f} | {rate:.3f} "
                f"| {cell['new_tokens'] / seconds:.1f} | {tokens:.0f} | {cell['passed']}/{WINDOWS} "
                f"| {share:.1%} | {versus} |"
            )
    print("\n| engine | time to first token (s) | peak memory (MB) |")
    print("|---|---:|---:|")
    for result in results:
        print(f"| {result['engine']} | {result['first_token_s']:.2f} | {result['peak_mb']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=Path("./data"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.child:
        print(json.dumps(measure_engine(args.child, batches, args.repeats, args.data_dir)))
        return 0
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if unknown := set(engines) - set(ENGINES):
        parser.error(f"unknown engines {sorted(unknown)}: choose from {', '.join(ENGINES)}")
    if any(engine.startswith("transformers") for engine in engines):
        from service.summarizers.llm.bundled import resolve_model

        # Converted once, here: the conversion's memory is not the engine's.
        resolve_model("smollm2", args.data_dir / "models")
    gflops, parameters = matmul_gflops(), smollm2_parameters()
    results = []
    for engine in engines:
        print(f"measuring {engine} ...", flush=True)
        results.append(run_child(engine, args))
    print_table(results, gflops, parameters)
    if args.out:
        summary = {"gflops": gflops, "parameters": parameters, "results": results}
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the child imports scripts.*
    sys.exit(main())
