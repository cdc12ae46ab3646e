"""The summarizer interface, the checks every LLM answer goes through, and the factory."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel, Field, ValidationError

from .config import Settings
from .models import Interest, Summary, Window

MAX_INTERESTS = 5
MAX_LABEL_WORDS = 6


class Summarizer(Protocol):
    name: str

    def summarize(self, windows: Sequence[Window]) -> list[Summary]:
        """One summary per window, in order."""
        ...

    def describe(self) -> dict[str, Any]:
        """What made the summaries: summarizer, model, quantization (for provenance/readiness)."""
        ...


class InvalidAnswer(ValueError):
    """The model's answer cannot be used; the message becomes ``fallback_reason``."""


class _AnswerInterest(BaseModel):
    label: str = Field(min_length=1, max_length=80)
    weight: float = Field(ge=0)
    evidence: list[str] = Field(default_factory=list)


class _Answer(BaseModel):
    summary: str = Field(min_length=1, max_length=600)
    interests: list[_AnswerInterest]


def extract_json_object(text: str) -> str:
    """The first balanced ``{...}`` in ``text`` (models like to add words around it)."""
    start = text.find("{")
    if start < 0:
        raise InvalidAnswer("no JSON object in the model output")
    depth, in_string, escaped = 0, False, False
    for position in range(start, len(text)):
        char = text[position]
        if in_string:
            escaped = char == "\\" and not escaped
            if char == '"' and not escaped:
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start : position + 1]
    raise InvalidAnswer("the JSON object in the model output is not closed")


def parse_answer(text: str, window: Window) -> tuple[str, tuple[Interest, ...]]:
    """Validate a model answer against the window: schema, grounding, weights.

    An interest whose evidence names no item of the window is dropped; if none is left the
    whole answer is rejected.
    """
    try:
        answer = _Answer.model_validate(json.loads(extract_json_object(text)))
    except json.JSONDecodeError as error:
        raise InvalidAnswer(f"model output is not valid JSON ({error.msg})") from error
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidAnswer(
            f"model output does not fit the schema ({where}: {first['msg']})"
        ) from None
    window_items = set(window.item_ids)
    kept: dict[str, _AnswerInterest] = {}
    for interest in answer.interests:
        label = " ".join(interest.label.split())
        evidence = [item for item in dict.fromkeys(interest.evidence) if item in window_items]
        if not evidence or len(label.split()) > MAX_LABEL_WORDS or label.lower() in kept:
            continue
        kept[label.lower()] = _AnswerInterest(
            label=label, weight=interest.weight, evidence=evidence
        )
    if not kept:
        raise InvalidAnswer("no interest in the model output is backed by an item of the window")
    chosen = sorted(kept.values(), key=lambda i: i.weight, reverse=True)[:MAX_INTERESTS]
    return answer.summary.strip(), normalize_weights(
        [(i.label, i.weight, tuple(i.evidence)) for i in chosen]
    )


def normalize_weights(raw: Sequence[tuple[str, float, tuple[str, ...]]]) -> tuple[Interest, ...]:
    total = sum(weight for _, weight, _ in raw)
    if total <= 0:  # all zero: the order is all the model told us
        return tuple(Interest(label, round(1 / len(raw), 4), ev) for label, _, ev in raw)
    return tuple(Interest(label, round(weight / total, 4), ev) for label, weight, ev in raw)


def build_summarizer(settings: Settings) -> Summarizer:
    from .extractive import ExtractiveSummarizer

    extractive = ExtractiveSummarizer()
    if settings.llm_model is None:
        return extractive
    from .llm import LLMSummarizer

    return LLMSummarizer.load(settings, fallback=extractive)
