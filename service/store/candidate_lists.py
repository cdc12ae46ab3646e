"""The recommender's candidate lists, stored per user under the key they were made for."""

from __future__ import annotations

from collections.abc import Sequence

from service.store.connection import Database


class CandidateListTable(Database):
    def candidate_lists(self, user_id: str) -> tuple[str, bytes] | None:
        """The recommender's stored candidate lists for the user and the key they were made
        for, if any."""
        rows = self._tuples("SELECT key, lists FROM candidate_lists WHERE user_id = ?", (user_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def save_candidate_lists(self, lists: Sequence[tuple[str, str, bytes]]) -> None:
        """(user id, key, lists) rows, one transaction; a user without events any more is
        skipped (deleted meanwhile)."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO candidate_lists SELECT ?, ?, ?"
                " WHERE EXISTS (SELECT 1 FROM events WHERE user_id = ?)",
                [(user, key, blob, user) for user, key, blob in lists],
            )
