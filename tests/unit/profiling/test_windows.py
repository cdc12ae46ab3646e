from service.core.records import Event, Item, WindowSpec
from service.profiling.windows import cut_windows, events_hash

DAY = 86_400.0


def _events(count, gap=DAY):
    return [Event(f"e{n}", "u", f"i{n % 3}", "view", 1_000.0 + n * gap) for n in range(count)]


def test_count_windows_close_at_size_and_leave_the_rest_open():
    windows = cut_windows(_events(45), {}, WindowSpec.parse("20e"), now=1e12)
    assert [len(w.events) for w in windows] == [20, 20, 5]
    assert [w.closed for w in windows] == [True, True, False]
    assert [w.index for w in windows] == [0, 1, 2]
    assert [w.info.first_event for w in windows] == [0, 20, 40]  # where each begins


def test_time_windows_follow_the_clock_and_skip_empty_slots():
    events = _events(3) + [Event("late", "u", "i0", "view", 1_000.0 + 20 * DAY)]
    windows = cut_windows(events, {}, WindowSpec.parse("7d"), now=1_000.0 + 20.5 * DAY)
    assert [w.index for w in windows] == [0, 2]
    assert [len(w.events) for w in windows] == [3, 1]
    assert windows[0].closed and not windows[1].closed  # slot 2 ends on day 21, after now
    assert (windows[1].start, windows[1].end) == (14 * DAY, 21 * DAY)
    assert [w.first for w in windows] == [0, 3]  # the events before it, empty slots skipped


def test_time_window_indexes_do_not_move_when_older_events_arrive():
    spec = WindowSpec.parse("1d")
    recent = [Event(f"e{n}", "u", "i0", "view", 100 * DAY + n * DAY) for n in range(3)]
    before = [w.index for w in cut_windows(recent, {}, spec, now=1e12)]
    older = Event("old", "u", "i0", "view", 90 * DAY)
    after = [w.index for w in cut_windows([older, *recent], {}, spec, now=1e12)]
    assert before == [100, 101, 102] and after == [90, 100, 101, 102]


def test_windows_join_items_and_hash_changes_with_item_text():
    items = {"i0": Item("i0", "Zero")}
    spec = WindowSpec.parse("2e")
    before = cut_windows(_events(2), items, spec, now=0)[0]
    assert before.events[0].item == items["i0"] and before.events[1].item is None
    after = cut_windows(_events(2), {"i0": Item("i0", "Zero, retitled")}, spec, now=0)[0]
    assert events_hash(before) != events_hash(after)
    assert events_hash(before) == events_hash(cut_windows(_events(2), items, spec, now=0)[0])
