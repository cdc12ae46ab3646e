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
from service.summarizers.llm.support import WindowSupport, content_words
from service.summarizers.sensitive import is_sensitive

MAX_LABEL_WORDS = 6
MAX_LABEL_CHARS = 80
# Evidence kept per interest: the items that best back the label.
MAX_EVIDENCE = 5
# A summary in which one word makes up more than this share is a model stuck in a loop.
MAX_WORD_SHARE = 0.25


class InvalidAnswer(ValueError):
    """The model's answer cannot be used; the message becomes ``fallback_reason``."""


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
        raise InvalidAnswer("no JSON object in the model output")
    raise InvalidAnswer(f"model output is not valid JSON ({first_error.msg})")


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
    answer whose summary is about something else (its words are not the window's, as for a
    label). A summary that makes a sensitive inference, loops, or says nothing is replaced by
    one built from the interests.
    """
    try:
        answer = _Answer.model_validate(extract_json_object(text))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidAnswer(
            f"model output does not fit the schema ({where}: {first['msg']})"
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
        raise InvalidAnswer(f"no usable interest in the model output (dropped: {reasons})")
    chosen = sorted(kept.values(), key=lambda interest: interest[1], reverse=True)
    interests = normalize_weights(chosen[:MAX_INTERESTS])
    summary, problem = answer.summary, _summary_problem(answer.summary, support)
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


def _says_something_else(summary: str, support: WindowSupport) -> bool:
    """The summary has content words and is not supported by the window the way a label must
    be (half its content words the items' own, or close to an item in embedding space)."""
    return bool(content_words(summary)) and not support.check(summary).supported


def _summary_problem(summary: str, support: WindowSupport) -> str | None:
    """Why the summary is replaced by one built from the labels (None: it is kept); raises
    ``InvalidAnswer`` for a summary about something else, which sinks the whole answer."""
    if is_sensitive(summary):
        return "sensitive summary"
    if _says_something_else(summary, support):
        # Constrained decoding can make the labels the window's own categories whatever the
        # model is; the summary is its free text, and a summary about something else (a random
        # model's word salad, a made-up title) means the answer was not written from the items.
        raise InvalidAnswer("unsupported summary: its words are not the window items' words")
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
