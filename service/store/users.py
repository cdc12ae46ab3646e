"""What a user's deletion removes: every table that holds something of the user."""

from __future__ import annotations

from service.store.events import EventTable

# Every table that holds something of a user: what a deletion empties.
USER_TABLES = ("events", "profiles", "drift_reports", "profile_state", "candidate_lists")


class UserDeletion(EventTable):
    def delete_user(self, user_id: str) -> bool:
        """Remove everything kept about a user; False when there was nothing."""
        with self.transaction() as conn:
            removed = 0
            for table in USER_TABLES:
                removed += conn.execute(
                    f"DELETE FROM {table} WHERE user_id = ?", (user_id,)
                ).rowcount
        if removed:
            self._deletions += 1
            # Copy the WAL back into the (zeroing) main file and truncate it: old page images
            # in the log would otherwise keep the user's rows until the next checkpoint.
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed > 0
