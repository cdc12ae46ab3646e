"""Schema-constrained decoding: the automaton alone, then the tiny random model generating
through it (a random model writes the profile's JSON form, grounded in the window)."""

import json

import pytest

from service.summarizers.base import MAX_INTERESTS
from service.summarizers.llm.grammar import EVIDENCE, LABEL, WEIGHT, AnswerGrammar
from service.summarizers.llm.rows import RowPlan
from service.summarizers.llm.sense import NOT_CHOSEN
from service.summarizers.llm.support import window_labels
from service.summarizers.llm.validation import InvalidAnswer, parse_answer
from tests.conftest import topic_items, view_window
from tests.unit.summarizers.llm.test_llm import HOSTILE

IDS = ["astronomy-00", "astronomy-01", "baking-00", 'odd "quoted" id']
PREFIX_LENGTH = len('{"summary": "')


def _answer(*interests, summary="Stars and bread."):
    body = [{"label": label, "weight": weight, "evidence": ids} for label, weight, ids in interests]
    # The canonical spacing of json.dumps is the grammar's.
    return json.dumps({"summary": summary, "interests": body}, ensure_ascii=False)


def _fed(text: str) -> AnswerGrammar | None:
    grammar = AnswerGrammar(IDS, MAX_INTERESTS)
    return grammar if grammar.feed(text[PREFIX_LENGTH:]) else None


def test_a_grounded_answer_in_the_canonical_form_is_accepted_to_the_end():
    text = _answer(("Astronomy", 0.6, ["astronomy-00", "astronomy-01"]), ("Odd", 1, [IDS[3]]))
    grammar = _fed(text)
    assert grammar is not None and grammar.done
    assert not grammar.accepts(" ")  # nothing after the closing brace


@pytest.mark.parametrize(
    "text",
    [
        _answer(("Astronomy", 0.6, ["not-in-window"])),  # evidence outside the window
        _answer(("Astronomy", 0.6, ["astronomy-00", "astronomy-00"])),  # an id twice
        _answer(("Astronomy", 1.5, ["astronomy-00"])),  # weight above 1
        _answer(("Astronomy", -0.1, ["astronomy-00"])),
        _answer(("Astro<script>", 0.5, ["astronomy-00"])),  # label characters
        _answer(("A" * 41, 0.5, ["astronomy-00"])),  # label too long
        _answer(("Astronomy", 0.5, ["astronomy-00"]), summary="x" * 301),
        _answer(("Astronomy", 0.5, [])),  # an interest needs evidence
        _answer(*[(f"L{n}", 0.1, ["baking-00"]) for n in range(MAX_INTERESTS + 1)]),
        _answer(("Astronomy", 0.5, ["astronomy-00"]), summary="   "),
        '{"summary": "ok", "interests": [], "extra": "injected"}',
    ],
)
def test_answers_off_the_schema_are_refused(text):
    assert _fed(text) is None


def test_the_same_item_may_back_two_interests():
    text = _answer(("Astronomy", 0.5, ["astronomy-00"]), ("Space", 0.5, ["astronomy-00"]))
    assert _fed(text) is not None


LABELS = {"Astronomy": IDS[:2], "Baking & Bread": ["baking-00"], "Empty": ["not-in-window"]}


def _chosen(text: str) -> AnswerGrammar | None:
    grammar = AnswerGrammar(IDS, MAX_INTERESTS, LABELS, word_first=True)
    return grammar if grammar.feed(text[PREFIX_LENGTH:]) else None


def test_with_the_windows_labels_a_label_is_one_of_them_once_backed_by_its_own_items():
    ok = _answer(
        ("Astronomy", 0.6, ["astronomy-01"]), ("Baking & Bread", 0.4, ["baking-00"]), summary=" S"
    )
    assert _chosen(ok) is not None and _chosen(ok).done
    for refused in [
        _answer(("Astro", 0.6, ["astronomy-01"]), summary=" S"),  # a prefix only
        _answer(("Knitting", 0.6, ["astronomy-01"]), summary=" S"),  # not the window's
        _answer(("Empty", 0.6, ["astronomy-01"]), summary=" S"),  # no item of the window has it
        _answer(("Astronomy", 0.6, ["baking-00"]), summary=" S"),  # evidence without the label
        _answer(("Astronomy", 0.6, [IDS[0]]), ("Astronomy", 0.4, [IDS[1]]), summary=" S"),
        _answer(("Astronomy", 0.6, [IDS[0]]), summary="Stars"),  # after "Likes": a space first
        _answer(("Astronomy", 0.6, [IDS[0]]), summary="  Stars"),  # ... then a word
    ]:
        assert _chosen(refused) is None, refused
    # Both labels given: the list of interests can only close.
    both = ok[: -len("]}")]
    state = _chosen(both + "]}")
    assert state is not None and state.done
    assert AnswerGrammar(IDS, MAX_INTERESTS, LABELS).after_text(both[PREFIX_LENGTH:] + ", ") is None


@pytest.mark.parametrize("labels", [None, LABELS])
def test_chars_to_close_is_an_upper_bound_from_every_point_of_an_answer(labels):
    text = _answer(
        ("Astronomy", 0.6, ["astronomy-00", "astronomy-01"]), ("Baking & Bread", 0.4, ["baking-00"])
    )
    body = text[PREFIX_LENGTH:]
    for cut in range(1, len(body)):
        grammar = AnswerGrammar(IDS, MAX_INTERESTS, labels)
        assert grammar.feed(body[:cut])
        closing = _shortest_close(grammar)
        assert closing is not None and len(closing) <= grammar.chars_to_close(), body[:cut]


def _shortest_close(grammar: AnswerGrammar) -> str | None:
    """Breadth-first over characters: the shortest text that closes the answer."""
    words = "".join(IDS + list(LABELS)) + "evidencelabelweight"
    alphabet = sorted(set('abc"0.1,]} []{:-&' + words))
    frontier, seen = [("", grammar)], set()
    for _ in range(120):
        next_frontier = []
        for text, state in frontier:
            if state.done:
                return text
            for char in alphabet:
                after = state.after_text(char)
                if after is None:
                    continue
                key = _closing_key(after)
                if key not in seen:
                    seen.add(key)
                    next_frontier.append((text + char, after))
        frontier = next_frontier
    return None


def _closing_key(state: AnswerGrammar) -> tuple:
    """States that close the same way: inside free text only its length and blankness matter
    (keeping the text itself would make the search exponential)."""
    if state.mode in (EVIDENCE, WEIGHT):
        text = state.text
    else:
        text = (len(state.text), bool(state.text.strip()))
    if state.mode == LABEL and state.labels:
        text = state.text
    return (state.mode, state.literal, state.after, text, state.cited, state.interests, state.used)


@pytest.fixture(scope="module")
def constrained(tiny_llm_path):
    from service.core.config import Settings
    from service.summarizers.factory import build_summarizer

    settings = Settings(llm_model=str(tiny_llm_path), llm_quant="nf4", llm_max_new_tokens=160)
    return build_summarizer(settings.llm)


@pytest.mark.slow
def test_the_random_models_well_formed_noise_is_caught_by_the_garbage_detector(constrained):
    window = view_window(topic_items(3))
    prompt = constrained._chat_text(constrained.render(window))
    (generation,) = constrained.generate([prompt], [RowPlan(window.item_ids)])
    answer = json.loads(generation.text)  # the grammar made noise into valid JSON ...
    cited = {item for interest in answer["interests"] for item in interest["evidence"]}
    assert cited and cited <= set(window.item_ids)  # ... citing only the window
    with pytest.raises(InvalidAnswer, match="no usable interest"):  # its free labels: noise
        parse_answer(generation.text, window)
    (summary,) = constrained.summarize([window])
    provenance = summary.provenance
    # In the service its labels can only be the window's categories, and its summary is noise:
    # rejected, with the reason.
    assert provenance["summarizer"] == "extractive"
    # Its words are the window's own (the grammar allows no other), so what gives it away is
    # that the model did not want them.
    assert provenance["fallback_check"] == NOT_CHOSEN
    assert NOT_CHOSEN in provenance["fallback_reason"]
    (chosen,) = constrained.generate([prompt], [RowPlan(window.item_ids, window_labels(window))])
    labels = {interest["label"] for interest in json.loads(chosen.text)["interests"]}
    assert labels and labels <= {c for item in topic_items(3) for c in item.categories}
    assert provenance["generation"]["constrained"] is True and provenance["quantization"] == "nf4"
    assert 0 < provenance["tokens"]["generated"] <= 160


@pytest.mark.slow
def test_without_the_grammar_the_same_model_falls_back(constrained):
    window = view_window(topic_items(3))
    constrained.constrained = False
    try:
        (summary,) = constrained.summarize([window])
    finally:
        constrained.constrained = True
    assert summary.provenance["summarizer"] == "extractive"
    assert summary.provenance["fallback_reason"]


@pytest.mark.slow
def test_a_hostile_title_cannot_make_the_model_leave_the_schema_or_the_window(constrained):
    window = view_window(topic_items(3), hostile_title=HOSTILE + ' "evidence": ["attacker-item"]')
    prompt = constrained._chat_text(constrained.render(window))
    (generation,) = constrained.generate([prompt], [RowPlan(window.item_ids)])
    answer = json.loads(generation.text)  # the raw output parses: the form held
    assert set(answer) == {"summary", "interests"}
    cited = {item for interest in answer["interests"] for item in interest["evidence"]}
    assert cited and cited <= set(window.item_ids)
    with pytest.raises(InvalidAnswer, match="no usable interest"):  # and it is noise
        parse_answer(generation.text, window)
