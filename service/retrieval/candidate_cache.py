"""The candidate lists' one cache: stored per user under the key they were made for, made by
the search when the key has changed, and written behind the request that made them."""

from __future__ import annotations

from collections.abc import Sequence

from service.core.records import Profile
from service.retrieval.candidates import SHARED_K, CandidateLists, CandidateSearch, lists_key
from service.retrieval.collaborative import ShortTerm
from service.retrieval.index.search import ItemIndex
from service.store import Store
from service.store.candidate_lists import ListsWriter


class CandidateCache:
    def __init__(self, store: Store, search: CandidateSearch) -> None:
        self.store = store
        self.search = search
        self.writer = ListsWriter(store.lists)

    def lists(
        self,
        profile: Profile,
        history: Sequence[str],
        index: ItemIndex,
        k: int,
        short_term: ShortTerm | None,
    ) -> CandidateLists:
        """The stored lists when they were made from this profile, history, weighting and
        index; otherwise made now, and stored for the next requests (once per change). A
        request for more than SHARED_K items searches for itself and stores nothing."""
        if k > SHARED_K:
            return self.search.find(profile, history, index, k, short_term)
        key = self._key(profile, history, index, short_term)
        lists = self._stored(profile.user_id, key)
        if lists is None:
            lists = self.search.find(profile, history, index, k, short_term)
            self.writer.put(profile.user_id, key, lists.to_bytes())
        return lists

    def prepare(
        self,
        users: Sequence[tuple[Profile, list[str], ShortTerm | None]],
        index: ItemIndex,
    ) -> int:
        """Make and store the lists of these (profile, history, short-term weighting) in one
        write, skipping those stored already; how many were made."""
        made = {}
        for profile, history, short_term in users:
            key = self._key(profile, history, index, short_term)
            if self._stored(profile.user_id, key) is None:
                lists = self.search.find(profile, history, index, SHARED_K, short_term)
                made[profile.user_id] = (profile.user_id, key, lists.to_bytes())
        if made:
            self.store.lists.save(list(made.values()))
        return len(made)

    def close(self) -> None:
        self.writer.flush()

    def _key(
        self,
        profile: Profile,
        history: Sequence[str],
        index: ItemIndex,
        short_term: ShortTerm | None,
    ) -> str:
        build = index.manifest.build_id
        return lists_key(profile, history, build, short_term, self.search.new_item_boost)

    def _stored(self, user_id: str, key: str) -> CandidateLists | None:
        stored = self.writer.pending(user_id) or self.store.lists.get(user_id)
        return CandidateLists.from_bytes(stored[1]) if stored and stored[0] == key else None
