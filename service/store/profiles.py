"""Profiles per window, the state they were found up to date with, and the inspector's reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, astuple, dataclass
from typing import Any

import numpy as np

from service.core.records import Interest, Profile, WindowDrift, WindowInfo
from service.store.connection import Table
from service.store.events import EVENTS_STAMP, stamp_of


@dataclass(frozen=True)
class ProfileState:
    """What a user's profiles were found up to date with: their events (`Store.events.stamp`),
    the summarizer, embedder and window settings (``makers``, a hash), and until when (time
    windows close with time; None: until one of the others changes)."""

    events: str
    makers: str
    valid_until: float | None


@dataclass(frozen=True)
class CurrentRead:
    """One consistent read of what a recommendation needs when nothing changed."""

    state: ProfileState | None
    events: str  # the events stamp now
    newest: Profile | None
    history: list[str]  # item ids, oldest first


@dataclass(frozen=True)
class ProfileWrite:
    user_id: str
    profiles: Sequence[Profile]  # new or changed
    keep_windows: Sequence[int]  # every window the user has now
    state: ProfileState | None = None  # what they are all up to date with
    # Store.items.changes() read before the items the profiles were made from: the state is
    # not written if an item changed since (the profiles may hold its old text).
    item_changes: int = -1


class ProfileTable(Table):
    def save(self, writes: Sequence[ProfileWrite]) -> None:
        """Several users' new profiles, and the windows each keeps, in one transaction: one
        commit (one fsync) for a whole batch of a refresh instead of one per window."""
        with self.transaction() as conn:
            # Read under a share lock (PostgreSQL): an item write landing now waits for this
            # transaction, and its clearing of profile states then sees the states written here.
            changes = conn.execute("SELECT count FROM item_changes" + self.engine.for_share)
            item_changes = changes.fetchone()[0]
            self.engine.lock_users(conn, [write.user_id for write in writes])
            for write in writes:
                conn.executemany(_SAVE_PROFILE, [_profile_row(p) for p in write.profiles])
                _keep_only_windows(conn, write.user_id, write.keep_windows)
                if write.state is not None and write.item_changes == item_changes:
                    conn.execute(_SAVE_STATE, (write.user_id, *astuple(write.state), write.user_id))

    def of_user(self, user_id: str, limit: int | None = None) -> list[Profile]:
        """The user's profiles, oldest first; with ``limit``, only the newest ``limit``."""
        sql = "SELECT * FROM profiles WHERE user_id = ? ORDER BY window_index DESC"
        if limit is None:
            rows = self._query(sql, (user_id,))
        else:
            rows = self._query(sql + " LIMIT ?", (user_id, limit))
        return [_profile_from_row(row) for row in reversed(rows)]

    def current_read(self, user_id: str) -> CurrentRead:
        """The user's profile state, events stamp, newest profile and history, read in one
        transaction: a request that finds the state matching the stamp needs nothing else."""
        with self.snapshot() as conn:
            state = conn.execute(
                "SELECT events, makers, valid_until FROM profile_state WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            events = stamp_of(conn.execute(EVENTS_STAMP, (user_id,)).fetchone())
            newest = conn.execute(
                "SELECT * FROM profiles WHERE user_id = ? ORDER BY window_index DESC LIMIT 1",
                (user_id,),
            ).fetchone()
            history = conn.execute(
                "SELECT item_id FROM events WHERE user_id = ? ORDER BY ts, seq", (user_id,)
            ).fetchall()
        return CurrentRead(
            state=ProfileState(*tuple(state)) if state else None,
            events=events,
            newest=_profile_from_row(newest) if newest else None,
            history=[row[0] for row in history],
        )

    def recent_drifts(self, limit: int) -> list[Profile]:
        """Each user's latest window with detected drift, the most recent first."""
        rows = self._query(
            f"""SELECT * FROM (
                   SELECT *, ROW_NUMBER() OVER (
                       PARTITION BY user_id ORDER BY window_end DESC) AS newest
                   FROM profiles WHERE {self.engine.json_flag("drift", "detected")}
               ) AS drifted WHERE newest = 1 ORDER BY window_end DESC LIMIT ?""",
            (limit,),
        )
        return [_profile_from_row(row) for row in rows]

    def recent_fallbacks(self, limit: int) -> list[Profile]:
        """Profiles whose LLM answer was rejected, the newest first."""
        rows = self._query(
            f"""SELECT * FROM profiles
               WHERE {self.engine.json_present("provenance", "fallback_reason")}
               ORDER BY created_at DESC LIMIT ?""",
            (limit,),
        )
        return [_profile_from_row(row) for row in rows]

    def fallback_checks(self) -> dict[str, int]:
        """Stored profiles whose LLM answer was rejected, by the check it failed (``other``
        for those stored before checks were named)."""
        check = self.engine.json_text("provenance", "fallback_check")
        rows = self._query(
            f"""SELECT {check}, COUNT(*) FROM profiles
               WHERE {self.engine.json_present("provenance", "fallback_reason")}
               GROUP BY {check}"""
        )
        return {str(name or "other"): int(count) for name, count in rows}


_PROFILE_COLUMNS = (
    "user_id, window_index, window_start, window_end, n_events, closed, summary, interests,"
    " embedding, provenance, source_key, created_at, drift, first_event"
)
_REPLACED = ", ".join(
    f"{column.strip()} = excluded.{column.strip()}" for column in _PROFILE_COLUMNS.split(",")[2:]
)
# Only while the user has events: a profile made while the user was deleted is not written.
_SAVE_PROFILE = f"""INSERT INTO profiles ({_PROFILE_COLUMNS})
    SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
    WHERE EXISTS (SELECT 1 FROM events WHERE user_id = ?)
    ON CONFLICT (user_id, window_index) DO UPDATE SET {_REPLACED}"""
_SAVE_STATE = """INSERT INTO profile_state (user_id, events, makers, valid_until)
    SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM events WHERE user_id = ?)
    ON CONFLICT (user_id) DO UPDATE SET events = excluded.events, makers = excluded.makers,
    valid_until = excluded.valid_until"""


def _profile_row(profile: Profile) -> tuple[Any, ...]:
    window = profile.window
    return (
        profile.user_id,
        window.index,
        window.start,
        window.end,
        window.events,
        int(window.closed),
        profile.summary,
        json.dumps([_interest_to_json(i) for i in profile.interests]),
        np.asarray(profile.embedding, dtype=np.float32).tobytes(),
        json.dumps(profile.provenance),
        profile.source_key,
        profile.created_at,
        json.dumps(asdict(profile.drift)) if profile.drift else None,
        window.first_event,
        profile.user_id,
    )


def _keep_only_windows(conn: Any, user_id: str, indexes: Sequence[int]) -> None:
    keep = sorted(set(indexes))
    others = f" AND window_index NOT IN ({','.join('?' * len(keep))})" if keep else ""
    conn.execute(f"DELETE FROM profiles WHERE user_id = ?{others}", (user_id, *keep))


def _interest_to_json(interest: Interest) -> dict[str, Any]:
    return {"label": interest.label, "weight": interest.weight, "evidence": list(interest.evidence)}


def _profile_from_row(row: Any) -> Profile:
    return Profile(
        user_id=row["user_id"],
        window=WindowInfo(
            index=row["window_index"],
            start=row["window_start"],
            end=row["window_end"],
            events=row["n_events"],
            closed=bool(row["closed"]),
            first_event=row["first_event"],
        ),
        summary=row["summary"],
        interests=tuple(
            Interest(i["label"], i["weight"], tuple(i["evidence"]))
            for i in json.loads(row["interests"])
        ),
        embedding=np.frombuffer(bytes(row["embedding"]), dtype=np.float32),
        provenance=json.loads(row["provenance"]),
        source_key=row["source_key"],
        created_at=row["created_at"],
        drift=_drift_from_json(row["drift"]),
    )


def _drift_from_json(text: str | None) -> WindowDrift | None:
    if text is None:
        return None
    data = json.loads(text)
    # Timelines stored before the reference and the basis were kept read as ``()`` and
    # "fixed"; the profiler re-scores them (they differ from a fresh timeline) on first read.
    return WindowDrift(
        data["score"],
        data["threshold"],
        data["detected"],
        tuple(data["gained"]),
        tuple(data["lost"]),
        tuple(data.get("reference", ())),
        data.get("threshold_basis", "fixed"),
    )
