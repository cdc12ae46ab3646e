"""Reading items and events from files (CSV or JSONL).

Every record goes through the same validation as the REST API, and a bad record is reported
with its file and line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.core.records import Event, Item
from service.ingest.validation import EventIn, ItemIn


class FileFormatError(ValueError):
    pass


JSON_LINES = {".jsonl", ".ndjson", ".json"}


def check_input_file(path: Path) -> None:
    """FileFormatError unless ``path`` is a file of a kind we read (checked before anything
    is loaded, so a typo is answered at once)."""
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file")
    if path.suffix.lower() not in JSON_LINES | {".csv"}:
        raise FileFormatError(f"{path}: expected a .csv or .jsonl file")


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) from a ``.jsonl``/``.json`` or ``.csv`` file."""
    check_input_file(path)
    if path.suffix.lower() in JSON_LINES:
        yield from _jsonl(path)
    else:
        yield from _csv(path)


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise FileFormatError(f"{path}:{number}: not JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise FileFormatError(f"{path}:{number}: expected a JSON object per line")
            yield number, record


def _csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            yield number, {key: value for key, value in row.items() if value not in ("", None)}


def read_items(path: Path) -> Iterator[Item]:
    for number, record in read_records(path):
        if isinstance(record.get("categories"), str):  # CSV: "Jazz|Live music"
            record["categories"] = [c for c in record["categories"].split("|") if c]
        if isinstance(record.get("attributes"), str):
            record["attributes"] = json.loads(record["attributes"])
        yield _validated(ItemIn, record, path, number).to_item()


def read_events(path: Path) -> Iterator[Event]:
    for number, record in read_records(path):
        yield _validated(EventIn, record, path, number).to_event()


def _validated(model: type[ItemIn] | type[EventIn], record: dict, path: Path, number: int) -> Any:
    try:
        return model.model_validate(record)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise FileFormatError(f"{path}:{number}: {where}: {first['msg']}") from None
