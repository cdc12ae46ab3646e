import pytest

from service.core.records import Event, Item, Window, WindowEvent
from service.summarizers.extractive import ExtractiveSummarizer
from service.summarizers.weighting import action_weight, window_recency


def _window(pairs, items):
    events = tuple(
        WindowEvent(Event(f"e{n}", "u", item_id, kind, float(n), value), items.get(item_id))
        for n, (item_id, kind, value) in enumerate(pairs)
    )
    return Window(0, 0.0, float(len(pairs)), True, events)


ITEMS = {
    "j1": Item("j1", "Blue Note sessions", categories=("Jazz",)),
    "j2": Item("j2", "Bebop piano", categories=("Jazz", "Piano")),
    "c1": Item("c1", "Fresh pasta", categories=("Cooking",)),
    "n1": Item("n1", "Sourdough fermentation secrets"),
}


def test_action_and_recency_weights_order_the_evidence():
    assert (
        action_weight("purchase", None) > action_weight("click", None) > action_weight("view", None)
    )
    assert action_weight("rate", 5) > action_weight("rate", 3) > action_weight("rate", 1) - 1e-9
    weights = window_recency(4)
    assert weights == sorted(weights) and weights[-1] == 1.0


def test_interests_come_from_categories_with_evidence_from_the_window():
    window = _window([("c1", "view", None), ("j1", "purchase", None), ("j2", "like", None)], ITEMS)
    summary = ExtractiveSummarizer().summarize([window])[0]
    labels = [i.label for i in summary.interests]
    assert labels[0] == "Jazz" and "Cooking" in labels
    assert sum(i.weight for i in summary.interests) == pytest.approx(1.0, abs=1e-3)
    assert set(summary.interests[0].evidence) == {"j1", "j2"}
    assert all(set(i.evidence) <= {"j1", "j2", "c1"} for i in summary.interests)
    assert "Jazz" in summary.summary and "Bebop piano" in summary.summary
    assert summary.provenance["summarizer"] == "extractive"
    assert summary.provenance["fallback_reason"] is None


def test_recent_events_outweigh_old_ones():
    pairs = [("c1", "view", None)] * 3 + [("j1", "view", None)] * 3
    summary = ExtractiveSummarizer().summarize([_window(pairs, ITEMS)])[0]
    assert summary.interests[0].label == "Jazz"


def test_items_without_categories_give_title_keywords():
    summary = ExtractiveSummarizer().summarize([_window([("n1", "view", None)], ITEMS)])[0]
    assert {"sourdough", "fermentation"} <= {i.label for i in summary.interests}


def test_unknown_items_only_give_an_honest_empty_profile():
    summary = ExtractiveSummarizer().summarize([_window([("ghost", "view", None)], ITEMS)])[0]
    assert summary.interests == ()
    assert "Not enough" in summary.summary


def test_the_summary_gives_shares_of_the_windows_activity():
    # Every event is jazz; one item is piano too: jazz is all of the activity, whatever share
    # of the profile's weight it holds beside the sub-category.
    window = _window([("j1", "view", None), ("j2", "view", None), ("j2", "like", None)], ITEMS)
    summary = ExtractiveSummarizer().summarize_one(window)
    assert summary.summary.startswith("Mostly Jazz (100%), also Piano (")
    assert summary.interests[0].weight < 1.0  # the profile's weights share the mass
