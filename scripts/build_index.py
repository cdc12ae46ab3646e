"""Rebuild the FAISS item index (the same code as `iprof build-index`).

Usage:
    python scripts/build_index.py                  # from the items in the store (IPROF_DATA_DIR)
    python scripts/build_index.py --catalog FILE   # upsert a CSV/JSONL catalog first, then build

The index is written to IPROF_INDEX_DIR (default ./index) and made current atomically; a
running service on the same directory switches to it within seconds (it watches CURRENT).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import typer

from service.app.cli import build_index_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, help="CSV or JSONL catalog to load first")
    args = parser.parse_args(argv)
    try:
        build_index_command(catalog=args.catalog)
    except typer.Exit as failure:  # already explained on stderr
        return failure.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
