"""The store: one table class per thing kept, one ``Store`` over them all, on SQLite (a file,
the default) or PostgreSQL (``IPROF_DATABASE_URL``; see ``connection.py``).

``Store`` is what the rest of the service uses; the table classes say where each query lives.
"""

from __future__ import annotations

from service.store.candidate_lists import CandidateListTable
from service.store.events import IngestResult
from service.store.profiles import CurrentRead, ProfileState, ProfileTable, ProfileWrite
from service.store.users import UserDeletion

__all__ = ["CurrentRead", "IngestResult", "ProfileState", "ProfileWrite", "Store"]


class Store(UserDeletion, ProfileTable, CandidateListTable):
    """Items, events, profiles (with their drift) and their state, candidate lists."""
