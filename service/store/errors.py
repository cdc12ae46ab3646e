"""What the store raises when the database cannot be used."""

from __future__ import annotations


class StoreUnavailable(RuntimeError):
    """The database cannot be reached (down, refusing connections, or every connection busy
    past the timeout): nothing was written by the operation that raised it. The API answers
    503 ``store_unavailable``; the CLI says it in one line."""
