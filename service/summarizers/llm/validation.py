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
from service.summarizers.sensitive import is_sensitive

MAX_LABEL_WORDS = 6
MAX_LABEL_CHARS = 80


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


def parse_answer(text: str, window: Window) -> ParsedAnswer:
    """Validate a model answer against the window: schema, grounding, weights, sensitivity.

    An interest with a blank, overlong or sensitive label, or whose evidence names no item of
    the window, is dropped; if none is left the whole answer is rejected. A summary sentence
    that makes a sensitive inference is replaced by one built from the kept interests.
    """
    try:
        answer = _Answer.model_validate(extract_json_object(text))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidAnswer(
            f"model output does not fit the schema ({where}: {first['msg']})"
        ) from None
    window_items = set(window.item_ids)
    kept: dict[str, tuple[str, float, tuple[str, ...]]] = {}
    dropped: Counter[str] = Counter()
    for interest in answer.interests:
        label = " ".join(interest.label.split())
        cited = (str(item) for item in interest.evidence)
        evidence = tuple(item for item in dict.fromkeys(cited) if item in window_items)
        problem = _label_problem(label) or (None if evidence else "ungrounded")
        problem = problem or ("duplicate" if label.lower() in kept else None)
        if problem:
            dropped[problem] += 1
            continue
        kept[label.lower()] = (label, interest.weight, evidence)
    if not kept:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(dropped.items())) or "none given"
        raise InvalidAnswer(f"no usable interest in the model output (dropped: {reasons})")
    chosen = sorted(kept.values(), key=lambda interest: interest[1], reverse=True)
    interests = normalize_weights(chosen[:MAX_INTERESTS])
    summary = answer.summary
    if is_sensitive(summary):
        dropped["sensitive summary"] += 1
        summary = "Interested in " + ", ".join(i.label for i in interests) + "."
    return ParsedAnswer(summary, interests, dict(dropped))


def _label_problem(label: str) -> str | None:
    if not 0 < len(label) <= MAX_LABEL_CHARS or len(label.split()) > MAX_LABEL_WORDS:
        return "bad label"
    return "sensitive" if is_sensitive(label) else None
