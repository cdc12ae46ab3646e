"""What a user's deletion removes: every table that holds something of the user."""

from __future__ import annotations

from service.store.events import EventTable

# Every table that holds something of a user: what a deletion empties.
USER_TABLES = ("events", "profiles", "profile_state", "candidate_lists")


class UserDeletion(EventTable):
    def delete_user(self, user_id: str) -> bool:
        """Remove everything kept about a user; False when there was nothing."""
        with self.transaction() as conn:
            # The writes that check "the user still has events" take this lock too, so on
            # PostgreSQL none of them runs between this deletion and its commit.
            self.engine.lock_users(conn, [user_id])
            removed = 0
            for table in USER_TABLES:
                removed += conn.execute(
                    f"DELETE FROM {table} WHERE user_id = ?", (user_id,)
                ).rowcount
            if removed:
                conn.execute("UPDATE deletions SET count = count + 1")
        if removed:
            self.engine.after_delete()
        return removed > 0
