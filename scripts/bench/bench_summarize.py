"""Throughput of the LLM summarizer: users/s and generated tokens/s by batch size, nf4 vs none.

Usage:
    python scripts/bench/bench_summarize.py                     # CPU: the tiny test model
    python scripts/bench/bench_summarize.py --shape qwen2-1.5b  # GPU: a Qwen2-1.5B-shaped model
    python scripts/bench/bench_summarize.py --model PATH [--quant nf4,none] [--batch-sizes 1,8,64]
    # the real SmolLM2-135M-Instruct:
    python scripts/bench/bench_summarize.py --model smollm2 --batch-sizes 1,2,4,8,16,32 \
        --budget-s 900

On CUDA the service computes in bf16 (nf4/int8 with bf16 compute, ``none`` loads bf16
weights); on CPU float32. ``--budget-s`` stops starting new cells once it has passed, so a
run on a lent GPU machine fits its time (the JSON holds the cells measured). A model name the
settings know (``smollm2``) is converted once into ``--data-dir``/models.

Throughput does not depend on the weights, so the models are built with random weights (the
tiny 2-layer Llama of the tests, or a real-size Qwen2-1.5B architecture) and every generation is
held to exactly ``--new-tokens`` tokens, with the JSON grammar off. ``--grammar`` adds rows with
the grammar on (the service's default): the answer then closes on its own, within
``--new-tokens``, and tokens/s counts the tokens actually generated. Prompts are real: the
demo users' 20-event windows, rendered by the service's own prompt. Each cell is the median of
``--repeats`` runs of the service's ``summarize`` on one batch of that many windows (one window
per user).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from service.core.config import Settings
from service.core.records import Window, WindowSpec
from service.ingest.demo import demo_catalog
from service.ingest.demo_events import demo_events
from service.profiling.windows import cut_windows
from service.summarizers.extractive import ExtractiveSummarizer
from service.summarizers.llm.summarizer import LLMSummarizer
from tests.fixtures.tiny_llm import build_qwen2_shaped_llm, build_tiny_llm


class FixedLengthSummarizer(LLMSummarizer):
    """Generates exactly ``max_new_tokens`` for every window, closed answer or not: a fixed
    length makes runs comparable."""

    def _length_limits(self, json_end: Any) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "min_new_tokens": self.max_new_tokens}


def demo_windows(count: int) -> list[Window]:
    """``count`` windows of the demo users (repeated if there are fewer)."""
    items = {item.item_id: item for item in demo_catalog()}
    events = demo_events()
    windows: list[Window] = []
    for user in sorted({e.user_id for e in events}):
        mine = [e for e in events if e.user_id == user]
        windows += [w for w in cut_windows(mine, items, WindowSpec.parse("20e"), 1e12) if w.closed]
    return [windows[i % len(windows)] for i in range(count)]


def measure(summarizer: LLMSummarizer, windows: list[Window], repeats: int) -> tuple[float, int]:
    """Median seconds for one batch of ``windows``, and the tokens it generated."""
    summarizer.batch_size, summarizer.batch_tokens = len(windows), 10**9  # exactly one batch
    times, generated = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        summaries = summarizer.summarize(windows)
        times.append(time.perf_counter() - started)
        generated = sum(s.provenance["tokens"]["generated"] for s in summaries)
    return statistics.median(times), generated


def run(
    model: Path | str,
    modes: list[tuple[str, bool]],
    batch_sizes: list[int],
    new_tokens: int,
    repeats: int,
    budget_s: float = float("inf"),
    data_dir: Path = Path("./data"),
) -> list[dict]:
    rows: list[dict] = []
    started = time.perf_counter()
    for quant, grammar in modes:
        if time.perf_counter() - started > budget_s:
            break
        settings = Settings(
            data_dir=data_dir,
            llm_model=str(model),
            llm_quant=quant,
            llm_timeout_s=3_600,
            llm_constrained=grammar,
        )
        # Without the grammar, exactly new_tokens per user; with it, the answer's own length.
        kind = LLMSummarizer if grammar else FixedLengthSummarizer
        summarizer = kind.load(settings.llm, fallback=ExtractiveSummarizer())
        summarizer.max_new_tokens = new_tokens
        measure(summarizer, demo_windows(2), 1)  # warm-up: kernels, caches, token texts
        for batch in batch_sizes:
            if time.perf_counter() - started > budget_s:
                print(f"time budget of {budget_s:g} s spent: stopping", flush=True)
                break
            seconds, generated = measure(summarizer, demo_windows(batch), repeats)
            rows.append(
                {
                    "quant": quant + ("+grammar" if grammar else ""),
                    "batch": batch,
                    "seconds": round(seconds, 3),
                    "users_per_s": round(batch / seconds, 2),
                    "tokens_per_s": round(generated / seconds, 1),
                }
            )
            print_row(rows[-1], rows)
        del summarizer
    return rows


def print_row(row: dict, rows: list[dict]) -> None:
    base = next(r for r in rows if r["quant"] == row["quant"])
    speedup = row["users_per_s"] / base["users_per_s"]
    print(
        f"{row['quant']:13} {row['batch']:6} {row['seconds']:9.3f} {row['users_per_s']:10.2f} "
        f"{row['tokens_per_s']:12.1f} {speedup:8.1f}x",
        flush=True,
    )


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LLM summarizer throughput by batch size.")
    parser.add_argument(
        "--model", help="a local model or a bundled name (smollm2); default: build one (--shape)"
    )
    parser.add_argument("--shape", choices=["tiny", "qwen2-1.5b"], default="tiny")
    parser.add_argument("--quant", default="none,nf4")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    parser.add_argument("--new-tokens", type=int, default=128)  # a 5-interest JSON answer
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--grammar", action="store_true", help="also measure with the JSON grammar on"
    )
    parser.add_argument("--budget-s", type=float, default=float("inf"))
    parser.add_argument("--data-dir", type=Path, default=Path("./data"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="iprof-bench-") as folder:
        model = args.model
        if model is None:
            build = build_tiny_llm if args.shape == "tiny" else build_qwen2_shaped_llm
            model = build(Path(folder) / args.shape)
        print(
            f"model: {args.model or args.shape + ' (random weights)'}; device: {device_name()}; "
            f"{args.new_tokens} new tokens per user; median of {args.repeats}"
        )
        print(f"{'quant':13} {'batch':>6} {'seconds':>9} {'users/s':>10} {'tokens/s':>12}", end="")
        print(f" {'vs b=1':>9}")
        quants = args.quant.split(",")
        modes = [(q, False) for q in quants] + [(q, True) for q in quants if args.grammar]
        rows = run(
            model, modes, batch_sizes, args.new_tokens, args.repeats, args.budget_s, args.data_dir
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "device": device_name(),
                    "shape": args.model or args.shape,
                    "new_tokens": args.new_tokens,
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
