"""How long `iprof` commands take from the shell, beside what loading the embedder costs (what
every command paid before the CLI loaded models only on first use).

Usage:
    python scripts/bench/bench_cli.py [--repeats 3] [--work DIR]

Prepares the demo in ``--work`` once (`iprof demo`, the bundled MiniLM), then runs each command
``--repeats`` times as a user would (a new process each time) and prints the median wall time:
a reading command on a current profile (`profile`, `history`, `drift`), `recommend` (it loads
the index), an argument error (a missing file), and `--help`. The baseline, in the same run:
a process that imports the CLI and loads the bundled embedder, the cost every command carried.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = [
    ["profile", "frank"],
    ["history", "frank", "--limit", "1"],
    ["drift", "frank"],
    ["recommend", "frank", "-k", "3"],
    ["ingest-events", "missing.csv"],
    ["--help"],
]
BASELINE = (
    "import service.app.cli; from service.embedding.encoder import load_embedder;"
    " load_embedder(None).encode(['x'])"
)


def timed(command: list[str], work: Path, repeats: int) -> float:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, cwd=work, env=environment, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-cli-"))
    work.mkdir(parents=True, exist_ok=True)
    iprof = str(Path(sys.executable).with_name("iprof"))
    if not (work / "index" / "CURRENT").exists():
        print(f"preparing the demo in {work} ...", flush=True)
        subprocess.run([iprof, "demo"], cwd=work, check=True, capture_output=True)
    print(f"| command | median of {args.repeats} (s) |")
    print("|---|---:|")
    baseline = timed([sys.executable, "-c", BASELINE], work, args.repeats)
    print(f"| baseline: import the CLI and load the embedder | {baseline:.2f} |")
    for command in COMMANDS:
        seconds = timed([iprof, *command], work, args.repeats)
        print(f"| `iprof {' '.join(command)}` | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
