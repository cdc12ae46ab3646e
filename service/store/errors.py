"""What the store raises when the database cannot be used."""

from __future__ import annotations


class StoreUnavailable(RuntimeError):
    """The database cannot be reached (down, refusing connections, or every connection busy
    past the timeout): the operation that raised it was not acknowledged. The API answers
    503 ``store_unavailable``; the CLI says it in one line."""


class SchemaMismatch(RuntimeError):
    """The database's schema is not this code's: behind it (migrations to apply, and this
    process may not apply them) or ahead of it (migrations this code does not know)."""
