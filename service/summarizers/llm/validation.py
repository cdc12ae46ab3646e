"""The checks every LLM answer goes through before it becomes a profile: the JSON schema, each
interest's grounding in the window's items, weights, and sensitive inferences."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from service.core.records import Interest, Window
from service.summarizers.base import MAX_INTERESTS, normalize_weights
from service.summarizers.llm.grammar import SUMMARY_CHARS
from service.summarizers.llm.sense import Nonsense, check_summary
from service.summarizers.llm.support import WindowSupport, content_words
from service.summarizers.sensitive import is_sensitive

MAX_LABEL_WORDS = 6
MAX_LABEL_CHARS = 80
# Evidence kept per interest: the items that best back the label.
MAX_EVIDENCE = 5
# A summary in which one word makes up more than this share is a model stuck in a loop.
MAX_WORD_SHARE = 0.25


class InvalidAnswer(ValueError):
    """The model's answer cannot be used; the message becomes ``fallback_reason`` and
    ``check``, a short name for the check it failed, ``fallback_check`` (what is counted)."""

    def __init__(self, message: str, check: str) -> None:
        super().__init__(message)
        self.check = check


NO_JSON, SCHEMA, NO_INTEREST = "no JSON", "schema", "no usable interest"


class _AnswerInterest(BaseModel):
    # Lenient on purpose: one bad interest is dropped below, it does not sink the answer.
    label: str
    weight: float = Field(ge=0, le=1e6, allow_inf_nan=False)
    evidence: list[str | int] = Field(default_factory=list)  # MovieLens-like ids come as numbers


class _Answer(BaseModel):
    summary: str = Field(max_length=600)
    interests: list[_AnswerInterest]

    @field_validator("summary")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("the summary is empty")
        return value


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` (models like to add words around it)."""
    decoder = json.JSONDecoder()
    first_error = None
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError as error:
            first_error = first_error or error
            continue
        if isinstance(value, dict):
            return value
    if first_error is None:
        raise InvalidAnswer("no JSON object in the model output", NO_JSON)
    raise InvalidAnswer(f"model output is not valid JSON ({first_error.msg})", NO_JSON)


@dataclass(frozen=True)
class ParsedAnswer:
    summary: str
    interests: tuple[Interest, ...]
    dropped: dict[str, int]  # why interests (or the sentence) were removed: reason -> count


def parse_answer(text: str, window: Window, support: WindowSupport | None = None) -> ParsedAnswer:
    """Validate a model answer against the window: schema, grounding, weights, sensitivity.

    An interest is dropped when its label is blank, overlong or sensitive, is an item's title
    or a run of words of one, or is not supported by the window's items (see ``support``: the
    garbage detector). Its evidence is the cited items that back the label, or else the
    window's items that do; if no interest is left the whole answer is rejected. So is an
    answer whose summary is nonsense or untrue of the window (``llm.sense``: markup, words
    that are no words, another topic, the wrong leading interest, things no item says). A
    summary that makes a sensitive inference, loops, or says nothing is replaced by one built
    from the interests.
    """
    try:
        answer = _Answer.model_validate(extract_json_object(text))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidAnswer(
            f"model output does not fit the schema ({where}: {first['msg']})", SCHEMA
        ) from None
    support = support or WindowSupport(window)
    kept: dict[str, tuple[str, float, tuple[str, ...]]] = {}
    dropped: Counter[str] = Counter()
    for interest in answer.interests:
        label = " ".join(interest.label.split())
        problem = _label_problem(label) or ("duplicate" if label.lower() in kept else None)
        evidence: tuple[str, ...] = ()
        if not problem:
            problem, evidence = _grounding(label, interest.evidence, window, support)
        if problem:
            dropped[problem] += 1
            continue
        kept[label.lower()] = (label, interest.weight, evidence)
    if not kept:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(dropped.items())) or "none given"
        raise InvalidAnswer(
            f"no usable interest in the model output (dropped: {reasons})", NO_INTEREST
        )
    chosen = sorted(kept.values(), key=lambda interest: interest[1], reverse=True)
    interests = normalize_weights(chosen[:MAX_INTERESTS])
    summary = _without_cut_end(answer.summary)
    problem = _summary_problem(summary, window, support)
    if problem:
        dropped[problem] += 1
        summary = "Interested in " + ", ".join(i.label for i in interests) + "."
    return ParsedAnswer(summary, interests, dict(dropped))


def _grounding(
    label: str, cited: list[str | int], window: Window, support: WindowSupport
) -> tuple[str | None, tuple[str, ...]]:
    """Why the label is not about the window (None if it is), and its evidence."""
    if support.is_title(label):
        return "item title", ()
    if support.is_title_fragment(label):
        return "title fragment", ()
    check = support.check(label)
    if not check.supported:
        return "unsupported", ()
    window_items = set(window.item_ids)
    named = [item for item in dict.fromkeys(str(c) for c in cited) if item in window_items]
    backing = set(check.items)
    # The model's own choice where it backs the label; the window's best items otherwise.
    # (A supported label always has backing items.)
    evidence = [item for item in named if item in backing] or list(check.items)
    return None, tuple(evidence[:MAX_EVIDENCE])


def _without_cut_end(summary: str) -> str:
    """The summary without the part the grammar cut off at its length limit, and without
    words left hanging at its end: a summary that fills the limit and ends without a full stop
    ends mid-phrase ("..., science, sci-"), so it ends at its last comma instead; one that
    stops on "and the" ends before them."""
    written = summary
    if len(summary) >= SUMMARY_CHARS and summary[-1] not in ".!?" and "," in summary:
        summary = summary[: summary.rfind(",")]
    words = summary.rstrip(" ,;:.").split(" ")
    while len(words) > 2 and words[-1].lower() in _HANGING:
        words.pop()
    tidy = " ".join(words).rstrip(" ,;:")
    return tidy if tidy.endswith((".", "!", "?")) or tidy == written else tidy + "."


# Words a sentence does not end on.
_HANGING = frozenset({"a", "an", "and", "the", "of", "with", "or", "in", "on", "for", "to"})


def _summary_problem(summary: str, window: Window, support: WindowSupport) -> str | None:
    """Why the summary is replaced by one built from the labels (None: it is kept); raises
    ``InvalidAnswer`` for a summary that is nonsense or untrue of the window (``llm.sense``),
    which sinks the whole answer: it was not written from the items."""
    if is_sensitive(summary):
        return "sensitive summary"
    try:
        check_summary(summary, window, support)
    except Nonsense as nonsense:
        raise InvalidAnswer(f"summary rejected, {nonsense}", nonsense.check) from None
    words = content_words(summary)
    if "|" in summary or (
        words and max(Counter(words).values()) > MAX_WORD_SHARE * len(words) and len(words) >= 8
    ):
        return "looping summary"
    if not words:
        return "empty summary"  # "Likes ,": nothing said
    return None


def _label_problem(label: str) -> str | None:
    if not 0 < len(label) <= MAX_LABEL_CHARS or len(label.split()) > MAX_LABEL_WORDS:
        return "bad label"
    return "sensitive" if is_sensitive(label) else None
