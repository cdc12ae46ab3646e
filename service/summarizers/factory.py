"""The summarizer the settings ask for: extractive, or an LLM with the extractive one as its
fallback (and in its place, reporting why, when the model cannot load)."""

from __future__ import annotations

import logging
from dataclasses import replace

from service.core.config import LLMSettings
from service.summarizers.base import Summarizer
from service.summarizers.extractive import ExtractiveSummarizer
from service.summarizers.llm.bundled import default_model, model_name
from service.summarizers.llm.loading import ModelLoadError
from service.summarizers.llm.summarizer import LLMSummarizer, UnavailableLLM
from service.summarizers.llm.support import Encode

log = logging.getLogger(__name__)


def build_summarizer(llm: LLMSettings, encode: Encode | None = None) -> Summarizer:
    """``encode`` (the embedder's) lets the answer validation accept a label that is close to
    an item in embedding space, not only one made of the items' words."""
    extractive = ExtractiveSummarizer()
    if llm.model is None:
        model = default_model()
        if model is None:
            return extractive
        llm = replace(llm, model=model)
    try:
        return LLMSummarizer.load(llm, fallback=extractive, encode=encode)
    except ModelLoadError as error:
        # Serve (extractive profiles, readiness false) rather than not start at all.
        log.error("%s", error)
        return UnavailableLLM(model_name(str(llm.model)), llm.quant, str(error), extractive)
