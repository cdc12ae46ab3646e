"""The schema's migrations, as data: one ``NNNN_name.sql`` file each, applied in name order.

SQLite's files sit in this folder, PostgreSQL's in ``postgresql/``: the same names, one file
per schema change in each, differing only where the dialects do (types, identity columns).
A test holds the two lists of names equal. Append-only: a released migration is never edited,
a schema change is a new file in both folders.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent
FOLDERS = {"sqlite": _HERE, "postgresql": _HERE / "postgresql"}


def _statements_only(sql: str) -> str:
    # "--" comments say why a migration exists; they may hold ";", which splits statements.
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def migrations_for(dialect: str) -> list[tuple[str, str]]:
    """(name, SQL) of every migration of the dialect, in the order they are applied."""
    return [
        (path.stem, _statements_only(path.read_text(encoding="utf-8")))
        for path in sorted(FOLDERS[dialect].glob("[0-9][0-9][0-9][0-9]_*.sql"))
    ]
