"""The schema's migrations, as data: one ``NNNN_name.sql`` file each, applied in name order.

Append-only: a released migration is never edited, a schema change is a new file.
"""

from __future__ import annotations

from pathlib import Path


def _statements_only(sql: str) -> str:
    # "--" comments say why a migration exists; they may hold ";", which splits statements.
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


MIGRATIONS: list[tuple[str, str]] = [
    (path.stem, _statements_only(path.read_text(encoding="utf-8")))
    for path in sorted(Path(__file__).parent.glob("[0-9][0-9][0-9][0-9]_*.sql"))
]
