"""The summarizer the settings ask for: extractive, or an LLM with the extractive one as its
fallback (and in its place, reporting why, when the model cannot load)."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import replace

from service.core.config import LLMSettings
from service.summarizers.base import Summarizer
from service.summarizers.extractive import ExtractiveSummarizer
from service.summarizers.llm.bundled import default_model, model_name, surely_no_gpu
from service.summarizers.llm.llamacpp import LlamaCppSummarizer, is_gguf_model, quantization_of
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
    engine = LlamaCppSummarizer if choose_backend(llm) == "llama-cpp" else LLMSummarizer
    try:
        return engine.load(llm, fallback=extractive, encode=encode)
    except ModelLoadError as error:
        # Serve (extractive profiles, readiness false) rather than not start at all.
        log.error("%s", error)
        quantization = llm.quant if engine is LLMSummarizer else quantization_of(str(llm.model))
        return UnavailableLLM(
            model_name(str(llm.model)), quantization, str(error), extractive, engine.engine
        )


def choose_backend(llm: LLMSettings) -> str:
    """``auto``: llama.cpp where it runs the model as it ships (a GGUF) on a machine without
    CUDA and is installed; transformers + bitsandbytes otherwise (the GPU path)."""
    if llm.backend != "auto":
        return llm.backend
    if importlib.util.find_spec("llama_cpp") is None or not is_gguf_model(str(llm.model)):
        return "transformers"
    if surely_no_gpu():
        return "llama-cpp"
    import torch

    return "transformers" if torch.cuda.is_available() else "llama-cpp"
