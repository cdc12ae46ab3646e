import json

import pytest

from service.core.records import Event, Item, Window, WindowEvent
from service.summarizers.llm.validation import InvalidAnswer, extract_json_object, parse_answer

ITEMS = (
    Item("a", "Apollo 13", "The moon mission that nearly failed.", ("Space",)),
    Item("b", "Black holes, explained", "Where space and time end.", ("Space",)),
    Item("c", "Kind of Blue", "Miles Davis, 1959.", ("Jazz",)),
)
WINDOW = Window(
    0,
    0.0,
    1.0,
    True,
    tuple(WindowEvent(Event(f"e{i.item_id}", "u", i.item_id, "view", 0.0), i) for i in ITEMS),
)


def _answer(*interests, summary="Likes space and jazz."):
    return json.dumps(
        {
            "summary": summary,
            "interests": [dict(zip(("label", "weight", "evidence"), i)) for i in interests],
        }
    )


def test_a_grounded_answer_is_kept_with_normalised_weights():
    text = "Sure! " + _answer(("Space", 3, ["a", "b"]), ("Jazz", 1, ["c"])) + " Hope this helps."
    parsed = parse_answer(text, WINDOW)
    summary, interests = parsed.summary, parsed.interests
    assert summary == "Likes space and jazz."
    assert [(i.label, i.weight, i.evidence) for i in interests] == [
        ("Space", 0.75, ("a", "b")),
        ("Jazz", 0.25, ("c",)),
    ]


def test_an_interest_citing_items_outside_the_window_is_dropped():
    text = _answer(("Space", 1, ["a"]), ("Invented", 5, ["not-in-window"]))
    interests = parse_answer(text, WINDOW).interests
    assert [i.label for i in interests] == ["Space"] and interests[0].weight == 1.0


def test_evidence_is_filtered_to_the_window_and_duplicates_merge():
    text = _answer(
        ("Space", 1, ["a", "zzz", "a"]),
        ("space", 1, ["b"]),
        ("Far too many words in this one label", 1, ["c"]),
    )
    interests = parse_answer(text, WINDOW).interests
    assert [(i.label, i.evidence) for i in interests] == [("Space", ("a",))]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<unk> lorem ipsum", "no JSON object"),
        ('{"summary": "x", "interests": [', "not valid JSON"),
        ('{"summary": "x", interests: []}', "not valid JSON"),
        ('{"summary": "", "interests": []}', "schema"),
        (_answer(("Knitting", 1, ["a"])), "no usable interest .*1 unsupported"),
        (_answer(("Apollo 13", 1, ["a"])), "no usable interest .*1 item title"),
    ],
)
def test_unusable_answers_are_rejected_with_a_reason(text, reason):
    with pytest.raises(InvalidAnswer, match=reason):
        parse_answer(text, WINDOW)


def test_json_extraction_respects_braces_and_escaped_quotes_inside_strings():
    text = 'x {"a": "}{ \\"{q\\"", "b": {"c": 1}} y'
    assert extract_json_object(text) == {"a": '}{ "{q"', "b": {"c": 1}}


@pytest.mark.parametrize(
    "interest",
    [
        ("   ", 1, ["a"]),  # blank label
        ("x" * 81, 1, ["a"]),  # overlong label
        ("Huge", float("inf"), ["a"]),
    ],
)
def test_one_bad_interest_is_dropped_or_the_answer_rejected_never_a_crash(interest):
    text = json.dumps(
        {"summary": "Space.", "interests": [dict(zip(("label", "weight", "evidence"), interest))]}
    )
    with pytest.raises(InvalidAnswer):
        parse_answer(text, WINDOW)
    both = json.loads(text)
    both["interests"].append({"label": "Space", "weight": 1, "evidence": ["a"]})
    if interest[1] != float("inf"):  # an infinite weight fails the schema as a whole
        assert [i.label for i in parse_answer(json.dumps(both), WINDOW).interests] == ["Space"]


def test_numeric_evidence_ids_are_matched_as_strings():
    numeric = Window(
        0,
        0.0,
        1.0,
        True,
        (WindowEvent(Event("e", "u", "42", "rate", 0.0, 5.0), Item("42", "Heat", "", ("Drama",))),),
    )
    interests = parse_answer(_answer(("Drama", 1, [42]), summary="Drama."), numeric).interests
    assert interests[0].evidence == ("42",)


def test_sensitive_labels_are_removed_and_a_sensitive_summary_rewritten():
    text = _answer(
        ("Space", 2, ["a"]),
        ("Middle-aged women", 5, ["b"]),
        ("Conservative voter", 3, ["c"]),
        summary="A religious 40-year-old who likes space.",
    )
    parsed = parse_answer(text, WINDOW)
    assert [i.label for i in parsed.interests] == ["Space"]
    assert parsed.summary == "Interested in Space."
    assert parsed.dropped == {"sensitive": 2, "sensitive summary": 1}


@pytest.mark.parametrize(
    "label", ["Black holes", "Age of Empires", "Ancient History", "Yoga", "Men's football"]
)
def test_topics_that_merely_sound_personal_are_kept(label):
    item = Item("a", "Sunday", "black holes, age of empires, ancient history, yoga, men's football")
    window = Window(0, 0.0, 1.0, True, (WindowEvent(Event("e", "u", "a", "view", 0.0), item),))
    answer = _answer((label, 1, ["a"]), summary="Yoga.")
    assert [i.label for i in parse_answer(answer, window).interests] == [label]


def test_the_garbage_detector_rejects_word_salad_and_keeps_supported_labels():
    text = _answer(
        ("assistant summarises xq", 5, ["a"]),  # noise in valid JSON: not about the items
        ("Space missions", 2, ["c", "a"]),  # "c" is jazz: only "a" backs the label
        ("Jazz", 1, []),  # no citation: the window's items that back it
        summary="Space space space space space space space space jazz.",
    )
    parsed = parse_answer(text, WINDOW)
    assert [(i.label, i.evidence) for i in parsed.interests] == [
        ("Space missions", ("a",)),
        ("Jazz", ("c",)),
    ]
    assert parsed.dropped == {"unsupported": 1, "looping summary": 1}
    assert parsed.summary == "Interested in Space missions, Jazz."


def test_a_summary_about_something_else_sinks_the_answer_even_with_supported_labels():
    # Constrained decoding can force the labels to be the window's categories; then the summary,
    # the model's free text, is what shows whether it wrote from the items.
    text = _answer(("Space", 1, ["a"]), summary="Likes knitting patterns and vintage cars.")
    with pytest.raises(InvalidAnswer, match="off topic"):
        parse_answer(text, WINDOW)


def test_a_summary_that_says_nothing_is_rebuilt_from_the_labels():
    parsed = parse_answer(_answer(("Space", 1, ["a"]), summary="Likes ,"), WINDOW)
    assert parsed.summary == "Interested in Space." and parsed.dropped == {"empty summary": 1}


def test_a_run_of_a_titles_words_is_no_label_unless_it_is_a_category():
    item = Item("d", "Deep Space Nine: The James Webb Telescope", "", ("Deep Space",))
    window = Window(
        0, 0.0, 1.0, True, (*WINDOW.events, WindowEvent(Event("ed", "u", "d", "view", 0.0), item))
    )
    text = _answer(
        ("Black holes", 1, ["b"]),  # of "Black holes, explained"
        ("James Webb Telescope", 1, ["d"]),
        ("Deep Space", 1, ["d"]),  # a category, even if a title starts with it
        ("Space", 1, ["a"]),
    )
    parsed = parse_answer(text, window)
    assert [i.label for i in parsed.interests] == ["Deep Space", "Space"]
    assert parsed.dropped == {"title fragment": 2}


def test_a_label_close_to_an_item_in_embedding_space_is_supported():
    import numpy as np

    from service.summarizers.llm.support import WindowSupport

    vectors: dict[str, list[float]] = {}  # a label's vector; unknown labels point nowhere

    def encode(texts):
        def vector(text):  # items: sci-fi up, the rest right; labels as set below
            if "(" in text:
                return [0.0, 1.0] if "Sci-Fi" in text else [1.0, 0.0]
            return vectors.get(text, [0.0, 0.0])

        return np.array([vector(text) for text in texts])

    item = Item("1", "Alien (1979)", "", ("Horror", "Sci-Fi"))
    other = Item("2", "Heat (1995)", "", ("Crime",))
    window = Window(
        0,
        0.0,
        1.0,
        True,
        tuple(WindowEvent(Event(i.item_id, "u", i.item_id, "rate", 0.0), i) for i in (item, other)),
    )
    answer = _answer(("Science fiction", 1, ["2"]), summary="Horror and crime.")
    assert parse_answer(answer, window).interests[0].label == "Science fiction"  # sci-fi expands
    check = WindowSupport(window, encode).check("Outer worlds")
    assert not check.supported
    vectors["Outer worlds"] = [0.3, 0.95]  # cosine 0.95 to the sci-fi item, 0.3 to the other
    assert WindowSupport(window, encode).check("Outer worlds").items == ("1",)
