"""What a user's deletion removes: every table that holds something of the user."""

from __future__ import annotations

from service.store.connection import Database

# Every table that holds something of a user: what a deletion empties.
USER_TABLES = ("events", "profiles", "profile_state", "candidate_lists")


def delete_user(database: Database, user_id: str) -> bool:
    """Remove everything kept about a user, in one transaction; False when there was nothing."""
    with database.transaction() as conn:
        # The writes that check "the user still has events" take this lock too, so on
        # PostgreSQL none of them runs between this deletion and its commit.
        database.engine.lock_users(conn, [user_id])
        removed = 0
        for table in USER_TABLES:
            removed += conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,)).rowcount
        if removed:
            conn.execute("UPDATE deletions SET count = count + 1")
    if removed:
        database.engine.after_delete()
    return removed > 0
