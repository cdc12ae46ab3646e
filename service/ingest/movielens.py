"""MovieLens, in every layout we meet: ml-latest(-small) (``ratings.csv``, ``movies.csv``,
``tags.csv``), the original ml-100k (``u.data``, ``u.item``), and the ml-100k copy RecBole
ships (``ml-100k.inter``, ``ml-100k.item``). One loader serves the demo command and the
offline evaluation, so both see the same items and events.

Genres become item categories, tags (where there are any) the item text; ratings become
``rate`` events whose ids are stable, so loading a set twice counts nothing twice.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from service.core.records import Event, Item

# The 19 genre flags of u.item, in order.
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# RecBole writes "Children's" as the original u.genre file does.
RECBOLE_GENRES = {"Children's": "Children"}
MAX_TEXT_CHARS = 2000


class NotMovieLens(FileNotFoundError):
    pass


@dataclass(frozen=True)
class MovieLens:
    name: str
    items: list[Item]
    events: list[Event]


# Whether a tag (its tagger's user id, its time) may enter the item text: an evaluation keeps
# only the tags applied before its cut, so item text says nothing of the held-out part.
TagFilter = Callable[[str, float], bool]


def load_movielens(directory: Path) -> MovieLens:
    """The items and the rating events of a MovieLens folder in any of the three layouts."""
    return MovieLens(directory.name, movielens_items(directory), list(movielens_events(directory)))


def movielens_items(directory: Path, keep_tag: TagFilter | None = None) -> list[Item]:
    layout = _layout(directory)
    if layout == "latest":
        return _latest_items(directory, keep_tag)
    if layout == "100k":
        return _ml100k_items(directory)
    return _recbole_items(directory)


def movielens_events(directory: Path) -> Iterator[Event]:
    layout = _layout(directory)
    if layout == "latest":
        yield from _latest_events(directory)
    elif layout == "100k":
        yield from _ml100k_events(directory)
    else:
        yield from _recbole_events(directory)


def _layout(directory: Path) -> str:
    if (directory / "ratings.csv").is_file() and (directory / "movies.csv").is_file():
        return "latest"
    if (directory / "u.data").is_file() and (directory / "u.item").is_file():
        return "100k"
    if _recbole_file(directory, ".inter") and _recbole_file(directory, ".item"):
        return "recbole"
    raise NotMovieLens(
        f"{directory}: not a MovieLens folder (expected ratings.csv + movies.csv, "
        "u.data + u.item, or RecBole's *.inter + *.item)"
    )


def _rating(user: str, item: str, rating: str, ts: str) -> Event:
    return Event(f"ml-{user}-{item}", user, item, "rate", float(ts), float(rating))


def _latest_items(directory: Path, keep_tag: TagFilter | None) -> list[Item]:
    tags: dict[str, list[str]] = {}
    if (directory / "tags.csv").is_file():
        for row in _csv_rows(directory / "tags.csv"):
            if keep_tag is None or keep_tag(row["userId"], float(row["timestamp"])):
                tags.setdefault(row["movieId"], []).append(row["tag"])
    items = []
    for row in _csv_rows(directory / "movies.csv"):
        genres = [g for g in row["genres"].split("|") if g and g != "(no genres listed)"]
        text = ", ".join(dict.fromkeys(tags.get(row["movieId"], [])))
        items.append(Item(row["movieId"], row["title"], text[:MAX_TEXT_CHARS], tuple(genres)))
    return items


def _latest_events(directory: Path) -> Iterator[Event]:
    for row in _csv_rows(directory / "ratings.csv"):
        yield _rating(row["userId"], row["movieId"], row["rating"], row["timestamp"])


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


def _ml100k_items(directory: Path) -> list[Item]:
    items = []
    with (directory / "u.item").open(encoding="latin-1") as handle:
        for row in csv.reader(handle, delimiter="|"):
            flags = row[-len(ML100K_GENRES) :]
            genres = tuple(
                g for g, flag in zip(ML100K_GENRES, flags) if flag == "1" and g != "unknown"
            )
            items.append(Item(row[0], row[1], "", genres))
    return items


def _ml100k_events(directory: Path) -> Iterator[Event]:
    with (directory / "u.data").open(encoding="latin-1") as handle:
        for line in handle:
            user, item, rating, ts = line.split("\t")
            yield _rating(user, item, rating, ts.strip())


def _recbole_file(directory: Path, suffix: str) -> Path | None:
    return next(iter(sorted(directory.glob(f"*{suffix}"))), None)


def _recbole_rows(directory: Path, suffix: str) -> Iterator[list[str]]:
    path = _recbole_file(directory, suffix)
    assert path is not None  # _layout checked
    with path.open(encoding="utf-8") as handle:
        next(handle)  # the first line names the fields
        for line in handle:
            if line.strip():
                yield line.rstrip("\n").split("\t")


def _recbole_items(directory: Path) -> list[Item]:
    items = []
    for item, title, year, classes in _recbole_rows(directory, ".item"):
        named = {RECBOLE_GENRES.get(g, g) for g in classes.split()}
        genres = tuple(g for g in ML100K_GENRES if g in named and g != "unknown")  # u.item's order
        items.append(Item(item, f"{title} ({year})", "", genres))
    return items


def _recbole_events(directory: Path) -> Iterator[Event]:
    for user, item, rating, ts in _recbole_rows(directory, ".inter"):
        yield _rating(user, item, str(float(rating)), str(int(float(ts))))
