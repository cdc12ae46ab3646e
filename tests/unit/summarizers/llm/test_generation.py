import pytest
import torch

from service.core.records import Event, Item, Window, WindowEvent
from service.summarizers.llm.batching import (
    JsonScanner,
    json_end_criteria,
    plan_batches,
    with_oom_halving,
)
from service.summarizers.llm.rows import select_events


def test_batches_follow_a_token_budget_not_only_a_count():
    lengths = [100, 900, 120, 880, 110, 90]
    batches = plan_batches(lengths, max_batch=4, max_tokens=1_000)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for batch in batches:
        assert (
            len(batch) <= 4
            and max(lengths[i] for i in batch) * len(batch) <= 1_000
            or len(batch) == 1
        )
    assert [sorted(b) for b in batches][0] == [0, 2, 4, 5]  # the short ones travel together
    assert plan_batches([10] * 10, max_batch=4, max_tokens=10**6) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]


def test_json_scanner_closes_only_at_the_end_of_the_top_level_object():
    scanner = JsonScanner()
    for piece in ['likes } and { in text", ', '"interests": [{"label": "a\\"}"', ', "weight": 1}]']:
        scanner.feed(piece)
        assert not scanner.closed
    scanner.feed("}   trailing words")
    assert scanner.closed


def test_stopping_criteria_end_each_row_when_its_json_is_complete():
    class Tokens:
        pieces = {1: '", "interests": []', 2: "}", 3: " more"}

        def decode(self, ids, skip_special_tokens=True):
            return self.pieces[ids[0]]

    criteria = json_end_criteria(Tokens(), batch_size=2)
    assert criteria(torch.tensor([[1], [1]]), None).tolist() == [False, False]
    assert criteria(torch.tensor([[2], [3]]), None).tolist() == [True, False]


def test_out_of_memory_halves_the_batch_and_retries_in_order():
    calls = []

    def run(rows):
        calls.append(len(rows))
        if len(rows) > 2 or 7 in rows:  # row 7 never fits, not even alone
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [row * 10 for row in rows]

    results = with_oom_halving(
        run, [1, 2, 3, 4, 5, 6, 7, 8], lambda row, error: f"no room for {row}"
    )
    assert results == [10, 20, 30, 40, 50, 60, "no room for 7", 80]  # the others unaffected
    assert calls[0] == 8 and max(calls[1:]) <= 4

    def broken(rows):
        raise ValueError("bad")

    with pytest.raises(ValueError):  # anything but running out of memory is not retried
        with_oom_halving(broken, [1, 2], lambda row, error: None)


def test_long_windows_keep_the_most_recent_and_strongest_events():
    kinds = ["view"] * 2 + ["purchase"] + ["view"] * 7  # an old but strong event
    events = tuple(
        WindowEvent(Event(f"e{n}", "u", f"i{n}", kind, float(n)), Item(f"i{n}", f"T{n}"))
        for n, kind in enumerate(kinds)
    )
    chosen = select_events(Window(0, 0, 10, True, events), count=4)
    # Newest first; the old purchase outranks the weaker view e6, which goes.
    assert [c.event.event_id for c in chosen] == ["e9", "e8", "e7", "e2"]
