"""From a user's events to stored profiles: windows, summaries, embeddings, drift scores.

A window's profile is regenerated only when its events (or their items) changed, so reading a
profile is cheap once it exists.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace

from service.core.config import ProfilingSettings
from service.core.hashing import content_hash
from service.core.records import DriftReport, Event, Profile, Window
from service.embedding.encoder import Embedder
from service.profiling.drift import EMBEDDING_THRESHOLD, drift_report, drift_timeline, with_drift
from service.profiling.making import ProfileMaker
from service.profiling.windows import cut_windows
from service.store import ProfileState, ProfileWrite, Store
from service.summarizers.base import MODEL_DOWN, Summarizer

# Users planned and generated together by refresh_users: enough windows to fill the LLM's
# batches, few enough that their locks are held only briefly.
USERS_PER_ROUND = 64
LOCK_STRIPES = 256
TRANSIENT_RETRY_SECONDS = 300.0
# The state of profiles holding a passing failure: expired from the start, so every read
# takes the full check, which retries them (_retry_due).
TRANSIENT_STATE = 0.0


class UnknownUser(LookupError):
    pass


@dataclass
class _Plan:
    user_id: str
    windows: list[Window]
    stored: dict[int, Profile]
    stale: list[Window]
    history: list[str]  # the user's item ids, oldest first
    events_stamp: str  # Store.events.stamp, read before the events themselves
    item_changes: int  # Store.items.changes, read before the items
    closes_at: float | None  # when the first open time window closes (None: count windows)


@dataclass
class RefreshReport:
    users: int = 0
    unknown_users: int = 0
    windows_generated: int = 0
    fallbacks: Counter[str] = field(default_factory=Counter)  # reason -> windows

    def add(self, plans: Sequence[_Plan], made: Sequence[Profile]) -> None:
        self.users += len(plans)
        self.windows_generated += len(made)
        for profile in made:
            reason = profile.provenance.get("fallback_reason")
            if reason:
                self.fallbacks[reason] += 1


class Profiler:
    def __init__(
        self,
        store: Store,
        summarizer: Summarizer,
        embedder: Embedder,
        settings: ProfilingSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.summarizer = summarizer
        self.embedder = embedder
        self.settings = settings
        self.clock = clock
        # Striped, not one lock per user: memory stays bounded whatever ids callers send.
        self._locks = [threading.RLock() for _ in range(LOCK_STRIPES)]
        self.maker = ProfileMaker(summarizer, embedder, settings.window, clock)

    def current(self, user_id: str, refresh: bool = False) -> Profile:
        if not refresh:
            unchanged = self._unchanged(user_id)
            if unchanged:
                return unchanged[0]
        with self._lock_for(user_id):
            plan = self._plan(user_id, refresh_newest=refresh)
            return self._bring_up_to_date(plan, state_is_stale=True)[-1]

    def current_with_history(self, user_id: str) -> tuple[Profile, list[str]]:
        """The current profile and the user's item ids, oldest first (what the recommender
        needs, read once)."""
        unchanged = self._unchanged(user_id)
        if unchanged:
            return unchanged
        with self._lock_for(user_id):
            plan = self._plan(user_id)
            return self._bring_up_to_date(plan, state_is_stale=True)[-1], plan.history

    def _unchanged(self, user_id: str) -> tuple[Profile, list[str]] | None:
        """The newest profile and the history, when the stored profile state says nothing
        changed since the profiles were last found up to date: the same events, summarizer
        and embedder and window settings, and no time window closed since (item changes clear
        the state). One read transaction instead of re-cutting and re-hashing every window
        (the read path of every request); None sends the caller down the full check."""
        read = self.store.profiles.current_read(user_id)
        state = read.state
        if state is None or read.newest is None or state.events != read.events:
            return None
        if state.makers != self._makers_key():
            return None
        if read.newest.window.first_event is None:  # stored before windows kept it
            return None
        if state.valid_until is not None and self.clock() >= state.valid_until:
            return None
        return read.newest, read.history

    def history(self, user_id: str, limit: int | None = None) -> list[Profile]:
        profiles = self.update(user_id)
        return profiles if limit is None else profiles[-limit:]

    def drift(self, user_id: str) -> DriftReport:
        """The ``/drift`` answer, read from the stored timeline (nothing is written for it
        but what bringing the profiles up to date writes)."""
        return drift_report(user_id, self.update(user_id), self.settings.drift)

    def delete(self, user_id: str) -> bool:
        """Forget the user. Under the user's lock, so a profile being generated right now
        cannot be written back after the deletion."""
        with self._lock_for(user_id):
            return self.store.delete_user(user_id)

    def update(self, user_id: str, refresh: bool = False) -> list[Profile]:
        """Bring the user's stored profiles up to date; return them, oldest first.

        ``refresh`` regenerates the newest window's profile even if its events did not change.
        """
        with self._lock_for(user_id):
            return self._update_locked(user_id, refresh)

    def refresh_users(
        self,
        user_ids: Sequence[str],
        force: bool = False,
        on_progress: Callable[[int], None] | None = None,
        then: Callable[[list[tuple[Profile, list[str]]]], object] | None = None,
    ) -> RefreshReport:
        """Bring many users up to date, generating their stale windows together so the
        summarizer fills its batches across users. ``force`` regenerates every window.
        ``then`` is given each round's (current profile, history) pairs once stored."""
        report = RefreshReport()
        for start in range(0, len(user_ids), USERS_PER_ROUND):
            chunk = list(dict.fromkeys(user_ids[start : start + USERS_PER_ROUND]))
            with ExitStack() as held:
                for lock in self._locks_for(chunk):
                    held.enter_context(lock)
                plans = []
                for user in chunk:
                    try:
                        plans.append(self._plan(user, stale_all=force))
                    except UnknownUser:
                        report.unknown_users += 1
                fresh = self.maker.make([(p.user_id, w) for p in plans for w in p.stale])
                made: dict[str, list[Profile]] = {}
                for profile in fresh:
                    made.setdefault(profile.user_id, []).append(profile)
                applied = [self._apply(plan, made.get(plan.user_id, [])) for plan in plans]
                self.store.profiles.save([write for _, write in applied])
                report.add(plans, fresh)
                if then:
                    then(
                        [
                            (profiles[-1], plan.history)
                            for (profiles, _), plan in zip(applied, plans)
                        ]
                    )
            if on_progress:
                on_progress(len(chunk))
        return report

    def _update_locked(self, user_id: str, refresh: bool = False) -> list[Profile]:
        return self._bring_up_to_date(self._plan(user_id, refresh_newest=refresh))

    def _bring_up_to_date(self, plan: _Plan, state_is_stale: bool = False) -> list[Profile]:
        """``state_is_stale``: the caller found the stored profile state out of date (missing
        after an upgrade, a time window closed, an item changed), so it is written again even
        when the profiles need nothing; later reads then take the fast path again."""
        unchanged = not plan.stale and plan.stored.keys() == {w.index for w in plan.windows}
        unchanged = unchanged and all(plan.stored[w.index].window == w.info for w in plan.windows)
        if unchanged and self._drift_holds([plan.stored[w.index] for w in plan.windows]):
            # Nothing changed since they were stored (drift included): nothing to write but,
            # when asked, the state that says so.
            profiles = [plan.stored[w.index] for w in plan.windows]
            state = self._state(plan, profiles)
            if state_is_stale and state.valid_until != TRANSIENT_STATE:
                write = ProfileWrite(plan.user_id, [], list(plan.stored), state, plan.item_changes)
                self.store.profiles.save([write])
            return profiles
        made = self.maker.make([(plan.user_id, w) for w in plan.stale])
        profiles, write = self._apply(plan, made)
        self.store.profiles.save([write])
        return profiles

    def _plan(self, user_id: str, refresh_newest: bool = False, stale_all: bool = False) -> _Plan:
        """The user's windows and which of them need a (new) profile."""
        # Read first: an event or item change arriving after them leaves the stored state
        # behind, never ahead.
        events_stamp = self.store.events.stamp(user_id)
        item_changes = self.store.items.changes()
        events = self.store.events.of_user(user_id)
        windows, closes_at = self._profiled_windows(user_id, events)
        stored = {p.window.index: p for p in self.store.profiles.of_user(user_id)}
        makers = self.maker.makers()
        stale = [
            w
            for w in windows
            if stale_all
            or w.index not in stored
            or stored[w.index].source_key != self.maker.source_key(w, makers)
            or self._retry_due(stored[w.index])
            or (refresh_newest and w is windows[-1])
        ]
        history = [e.item_id for e in events]
        return _Plan(
            user_id, windows, stored, stale, history, events_stamp, item_changes, closes_at
        )

    def _retry_due(self, profile: Profile) -> bool:
        """A profile that fell back for a passing reason is made again: as soon as the model
        is back when it was not loaded, and at most every TRANSIENT_RETRY_SECONDS after a
        timeout or a crash (greedy generation may well fail the same way again)."""
        transient = profile.provenance.get("transient")
        if not transient:
            return False
        if transient == MODEL_DOWN:
            return self.summarizer.problem is None
        return self.clock() - profile.created_at > TRANSIENT_RETRY_SECONDS

    def _apply(self, plan: _Plan, made: Sequence[Profile]) -> tuple[list[Profile], ProfileWrite]:
        """The user's profiles with the new ones in and drift re-scored over the whole history,
        and what the store must write for that (vanished windows are dropped)."""
        fresh = {p.window.index: p for p in made}
        # A stored window's record is the one just cut (rows stored before a field was kept,
        # the position of the first event, get it here).
        profiles = [
            fresh.get(w.index) or replace(plan.stored[w.index], window=w.info) for w in plan.windows
        ]
        profiles = self._with_drift(profiles)
        changed = []
        for profile in profiles:
            before = plan.stored.get(profile.window.index)
            # Unchanged windows are rewritten only when the history around them re-scored them
            # (or their record was incomplete).
            if (
                before is None
                or profile.window.index in fresh
                or (before.drift, before.window) != (profile.drift, profile.window)
            ):
                changed.append(profile)
        write = ProfileWrite(
            plan.user_id,
            changed,
            [w.index for w in plan.windows],
            self._state(plan, profiles),
            plan.item_changes,
        )
        return profiles, write

    def _state(self, plan: _Plan, profiles: Sequence[Profile]) -> ProfileState:
        """What the profiles are now up to date with, for ``_unchanged`` to compare."""
        valid_until = plan.closes_at
        if any(p.provenance.get("transient") for p in profiles):
            valid_until = TRANSIENT_STATE  # a passing failure is retried by the full check
        return ProfileState(plan.events_stamp, self._makers_key(), valid_until)

    def _makers_key(self) -> str:
        """The makers, the window settings (windows cut another way are other windows) and the
        drift settings (the stored timeline is scored under them)."""
        window = [str(self.settings.window), self.settings.min_window_events]
        drift = [asdict(self.settings.drift), asdict(EMBEDDING_THRESHOLD)]
        return content_hash(self.maker.makers() + json.dumps([window, drift], sort_keys=True))

    def _profiled_windows(
        self, user_id: str, events: Sequence[Event]
    ) -> tuple[list[Window], float | None]:
        """Closed windows, plus the open one once it holds enough events to say something
        (or when it is all there is); and when the first open time window closes."""
        if not events:
            raise UnknownUser(user_id)
        items = self.store.items.get(e.item_id for e in events)
        spec = self.settings.window
        windows = cut_windows(events, items, spec, self.clock())
        usable = [
            w for w in windows if w.closed or len(w.events) >= self.settings.min_window_events
        ]
        # Count windows close with events, which change the stamp; time windows with time.
        open_ends = [w.end for w in windows if not w.closed] if spec.kind == "time" else []
        return usable or windows[-1:], min(open_ends, default=None)

    def fallback_checks(self) -> dict[str, int]:
        """How many windows this process profiled from the fallback, by the check the LLM's
        answer failed."""
        return self.maker.fallback_checks()

    def _with_drift(self, profiles: list[Profile]) -> list[Profile]:
        return with_drift(profiles, self.settings.drift)

    def _drift_holds(self, profiles: Sequence[Profile]) -> bool:
        """Whether the stored timeline is the one the drift settings give now (they may have
        changed since it was stored)."""
        return [p.drift for p in profiles] == drift_timeline(profiles, self.settings.drift)

    def _lock_for(self, user_id: str) -> threading.RLock:
        return self._locks[_stripe(user_id)]

    def _locks_for(self, user_ids: Sequence[str]) -> list[threading.RLock]:
        """The locks of several users, each once, in one global order (no deadlock)."""
        return [self._locks[i] for i in sorted({_stripe(u) for u in user_ids})]


def _stripe(user_id: str) -> int:
    return zlib.crc32(user_id.encode()) % LOCK_STRIPES
