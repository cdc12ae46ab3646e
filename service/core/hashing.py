"""Short content hashes: what identifies a prompt, a window's events, a history."""

from __future__ import annotations

import hashlib


def content_hash(text: str) -> str:
    """The first 16 hex digits of the text's SHA-256: short enough to read, far from colliding."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
