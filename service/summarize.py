"""The summarizer interface, the checks every LLM answer goes through, and the factory."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel, Field, ValidationError, field_validator

from .config import Settings
from .models import Interest, Summary, Window

log = logging.getLogger(__name__)

MAX_INTERESTS = 5
MAX_LABEL_WORDS = 6
MAX_LABEL_CHARS = 80


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


def parse_answer(text: str, window: Window) -> tuple[str, tuple[Interest, ...]]:
    """Validate a model answer against the window: schema, grounding, weights.

    An interest with a blank or overlong label, or whose evidence names no item of the window,
    is dropped; if none is left the whole answer is rejected.
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
    for interest in answer.interests:
        label = " ".join(interest.label.split())
        cited = (str(item) for item in interest.evidence)
        evidence = tuple(item for item in dict.fromkeys(cited) if item in window_items)
        if not _usable_label(label) or not evidence or label.lower() in kept:
            continue
        kept[label.lower()] = (label, interest.weight, evidence)
    if not kept:
        raise InvalidAnswer("no interest in the model output is backed by an item of the window")
    chosen = sorted(kept.values(), key=lambda interest: interest[1], reverse=True)
    return answer.summary, normalize_weights(chosen[:MAX_INTERESTS])


def _usable_label(label: str) -> bool:
    return 0 < len(label) <= MAX_LABEL_CHARS and len(label.split()) <= MAX_LABEL_WORDS


def normalize_weights(raw: Sequence[tuple[str, float, tuple[str, ...]]]) -> tuple[Interest, ...]:
    total = sum(weight for _, weight, _ in raw)
    if not 0 < total < math.inf:  # all zero: the order is all the model told us
        return tuple(Interest(label, round(1 / len(raw), 4), ev) for label, _, ev in raw)
    return tuple(Interest(label, round(weight / total, 4), ev) for label, weight, ev in raw)


def build_summarizer(settings: Settings) -> Summarizer:
    from .extractive import ExtractiveSummarizer

    extractive = ExtractiveSummarizer()
    if settings.llm_model is None:
        return extractive
    from .llm import LLMSummarizer, ModelLoadError, UnavailableLLM

    try:
        return LLMSummarizer.load(settings, fallback=extractive)
    except ModelLoadError as error:
        # Serve (extractive profiles, readiness false) rather than not start at all.
        log.error("%s", error)
        return UnavailableLLM(settings.llm_model, settings.llm_quant, str(error), extractive)
