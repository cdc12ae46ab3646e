"""The nonsense detector (service/summarizers/llm/sense.py): each check on a summary that fails
only it, and summaries that are true of their window pass; the generation-side check and the
summary lead; and what the recommender says of an item an interest's search reached."""

import json

import numpy as np
import pytest

from service.core.records import Event, Interest, Item, Profile, Window, WindowEvent, WindowInfo
from service.retrieval.fusion import Source, fuse
from service.retrieval.sources import InterestKinds
from service.summarizers.llm.grammar import AnswerGrammar
from service.summarizers.llm.rows import summary_lead
from service.summarizers.llm.sense import (
    MARKUP,
    NOT_WORDS,
    OFF_TOPIC,
    UNGROUNDED,
    WRONG_LEAD,
    is_english_word,
    summary_vocabulary,
)
from service.summarizers.llm.summarizer import Generation, _check_confidence
from service.summarizers.llm.validation import InvalidAnswer, _without_cut_end, parse_answer


def _item(item_id: str, title: str, *categories: str) -> Item:
    return Item(item_id, title, f"A guide to {title.lower()}.", categories)


BEES = [_item(f"bee-{n}", t, "Beekeeping") for n, t in enumerate(
    ["Hive inspections", "Swarm catching", "Honey harvest", "Queen rearing", "Varroa mites",
     "Winter feeding"]
)]  # fmt: skip
BIKES = [_item(f"bike-{n}", t, "Mountain Biking") for n, t in enumerate(
    ["Trail braking", "Suspension setup"]
)]  # fmt: skip
SPACE = [
    _item("sp-0", "Rocket engines", "Space & Astronomy", "Spaceflight"),
    _item("sp-1", "Black holes", "Space & Astronomy", "Deep Space"),
    _item("sp-2", "Galaxies far away", "Space & Astronomy", "Deep Space"),
    _item("sp-3", "Quasars", "Space & Astronomy", "Deep Space"),
]


def _window(items: list[Item]) -> Window:
    events = tuple(
        WindowEvent(Event(f"e{n}", "u", item.item_id, "view", float(n)), item)
        for n, item in enumerate(items)
    )
    return Window(0, 0.0, float(len(items)), True, events)


# 6 of 8 events are beekeeping, and the newest (activity weighs recent events more).
MOSTLY_BEES = _window(BIKES + BEES)


def _answer(summary: str, label: str = "Beekeeping", evidence: str = "bee-0") -> str:
    interests = [{"label": label, "weight": 1.0, "evidence": [evidence]}]
    return json.dumps({"summary": summary, "interests": interests})


@pytest.mark.parametrize(
    ("summary", "check"),
    [
        ("Likes beekeeping [label", MARKUP),
        ('Likes beekeeping", "interests', MARKUP),
        ("Likes beekeeping (honey harvest", MARKUP),
        ("Likes beekeeping and cometscumentrp hives", NOT_WORDS),
        ("Likes knitting patterns and vintage cars.", OFF_TOPIC),
        ("Likes mountain biking.", WRONG_LEAD),  # 25% of the window, the example
        ("Likes beekeeping, honey harvest and road bikes.", UNGROUNDED),  # no item says road
    ],
)
def test_each_check_rejects_the_summary_it_is_for_and_names_itself(summary, check):
    with pytest.raises(InvalidAnswer) as raised:
        parse_answer(_answer(summary), MOSTLY_BEES)
    assert raised.value.check == check
    assert check in str(raised.value)


@pytest.mark.parametrize(
    "summary",
    [
        "Likes beekeeping, honey harvest and mountain biking.",
        "Likes beekeeping, especially swarm catching.",
        "Likes hive inspections and the occasional trail.",
    ],
)
def test_summaries_true_of_the_window_pass(summary):
    parsed = parse_answer(_answer(summary), MOSTLY_BEES)
    assert parsed.summary == summary


def test_a_sub_category_of_the_leading_interest_may_lead():
    window = _window(SPACE)  # all "Space & Astronomy", a quarter "Spaceflight"
    parsed = parse_answer(
        _answer("Likes spaceflight and deep space.", "Deep Space", "sp-1"), window
    )
    assert parsed.summary.startswith("Likes spaceflight")


def test_english_words_are_known_in_their_inflected_forms():
    for word in ("documentaries", "thrillers", "comedies", "cooked", "biking", "planets"):
        assert is_english_word(word), word
    for noise in ("cometscumentrp", "uroukesersta", "thrillercel"):
        assert not is_english_word(noise), noise


def test_a_summary_cut_at_the_grammars_limit_ends_at_its_last_whole_phrase():
    cut = "Likes drama, thriller, crime, adventure, comedy, romance, war, magic, fantasy, sci-"
    assert _without_cut_end(cut) == (
        "Likes drama, thriller, crime, adventure, comedy, romance, war, magic, fantasy."
    )
    assert _without_cut_end("Likes horror, comedy, and the") == "Likes horror, comedy."
    assert _without_cut_end("Likes jazz.") == "Likes jazz."


def test_the_summary_leads_with_the_windows_leading_category():
    assert summary_lead(MOSTLY_BEES) == "Likes beekeeping"
    assert summary_lead(_window(SPACE)) == "Likes space & astronomy"
    untagged = _window([Item("x", "Some title", "", ())])
    assert summary_lead(untagged) == "Likes"


def test_the_grammar_keeps_a_summary_to_the_windows_words():
    words = summary_vocabulary(MOSTLY_BEES)
    grammar = AnswerGrammar(["bee-0"], 3, {"Beekeeping": ["bee-0"]}, summary_words=words)
    assert grammar.accepts(", honey harvest and swarm catching")
    assert not grammar.accepts(", riding")  # no item says it
    assert not grammar.accepts("s")  # glued to the lead's last word
    assert not grammar.accepts(", honey [")  # markup


def test_the_first_label_is_the_windows_leading_category_when_given():
    labels = {"Beekeeping": ["bee-0"], "Mountain Biking": ["bike-0"]}
    grammar = AnswerGrammar(["bee-0", "bike-0"], 3, labels, first_label="Beekeeping")
    start = 'Likes bees", "interests": [{"label": "'
    assert grammar.accepts(start + 'Beekeeping"')
    assert not grammar.accepts(start + 'Mountain Biking"')
    after_first = start + 'Beekeeping", "weight": 0.7, "evidence": ["bee-0"]}, {"label": "'
    assert grammar.accepts(after_first + 'Mountain Biking"')  # the rest is the model's


def test_a_summary_the_model_did_not_want_is_rejected_as_the_grammars():
    sure = Generation("{}", 10, 20, summary_logprob=-1.2)
    _check_confidence(sure)  # a real model's words: no exception
    with pytest.raises(InvalidAnswer) as raised:
        _check_confidence(Generation("{}", 10, 20, summary_logprob=-6.3))
    assert raised.value.check == "not the model's words"


# --- reasons that hold ---------------------------------------------------------------------


class _Catalog:
    """The store's item lookup (``store.items.get``), over a fixed catalog."""

    def __init__(self, items: list[Item]) -> None:
        self.items = self
        self.by_id = {item.item_id: item for item in items}

    def get(self, ids):
        return {i: self.by_id[i] for i in ids if i in self.by_id}


CHESS = [_item(f"chess-{n}", t, "Chess") for n, t in enumerate(["Openings", "Endgames"])]
FOOTBALL = [_item("foot-0", "Set pieces", "Football")]


def _chess_profile() -> Profile:
    interest = Interest("Chess", 1.0, ("chess-0", "chess-1"))
    return Profile("u", WindowInfo(0, 0.0, 1.0, 2, True), "Likes chess.", (interest,),
                   np.zeros(4, dtype=np.float32), {}, "key", 0.0)  # fmt: skip


def test_an_interest_vouches_only_for_items_of_its_kind():
    catalog = _Catalog(CHESS + FOOTBALL + [_item("chess-2", "Gambits", "Chess")])
    item_ids = ["chess-2", "foot-0"]
    kinds = InterestKinds(catalog, _chess_profile())  # type: ignore[arg-type]
    explain = kinds.explainer(0, item_ids)
    assert explain([0, 1]) == ["matches your interest 'Chess'", None]


def test_an_item_the_interest_does_not_vouch_for_takes_the_next_true_reason():
    catalog = _Catalog(CHESS + FOOTBALL + [_item("chess-2", "Gambits", "Chess")])
    item_ids = ["chess-2", "foot-0", "chess-0"]
    kinds = InterestKinds(catalog, _chess_profile())  # type: ignore[arg-type]
    interest = Source(
        np.array([0, 1]), 1.0, kinds.explainer(0, item_ids), explains_first=True,
        loose=lambda rows: ["near your interest 'Chess', though not of its kind"] * len(rows),
    )  # fmt: skip
    others = Source(np.array([1]), 0.5, lambda rows: ["popular with other users"] * len(rows))
    seen = np.array([2])
    order = np.arange(3)
    by_id = {r.item_id: r.reason for r in fuse([interest, others], seen, 2, item_ids, order)}
    assert by_id == {
        "chess-2": "matches your interest 'Chess'",
        "foot-0": "popular with other users",  # found by the chess search too, but not chess
    }
    alone = {r.item_id: r.reason for r in fuse([interest], seen, 2, item_ids, order)}
    assert alone["foot-0"] == "near your interest 'Chess', though not of its kind"


def test_a_placed_new_item_says_whether_it_is_of_the_interests_kind():
    from service.retrieval.fusion import Recommendation
    from service.retrieval.new_items import Placed
    from service.retrieval.placement import with_placed_items

    catalog = _Catalog(CHESS + FOOTBALL + [_item("chess-2", "Gambits", "Chess")])
    kinds = InterestKinds(catalog, _chess_profile())  # type: ignore[arg-type]
    fused = [Recommendation(f"old{n}", 10.0 - n, "popular with other users") for n in range(4)]
    placed = Placed(np.array([0, 1]), np.array([0, 1]), np.array([0, 0]))
    ranked = with_placed_items(fused, placed, _chess_profile(), ["chess-2", "foot-0"], 4, kinds)
    reasons = {r.item_id: r.reason for r in ranked}
    assert reasons["chess-2"] == "new here; matches your interest 'Chess'"
    assert reasons["foot-0"] == "new here; near your interest 'Chess', though not of its kind"
