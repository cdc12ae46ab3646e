"""Loading a causal LM and its tokenizer, quantized with bitsandbytes as the settings say."""

from __future__ import annotations

import logging
from typing import Any

from service.core.config import LLMSettings
from service.summarizers.llm.bundled import BundledModelError, resolve_model


class ModelLoadError(RuntimeError):
    pass


class _NoHubKernelWarning(logging.Filter):
    """On CPUs with AVX512-BF16, bitsandbytes tries to fetch a faster 4-bit kernel from the
    Hugging Face hub (through the ``kernels`` package) and, offline, warns twice: "Skipping
    publisher trust check ..." and "Failed to load CPU gemm_4bit_forward ... pip install
    kernels". Models load from local paths here, never from a hub, and bitsandbytes goes on with
    its own kernels: the warnings read like a broken install and are not one, so they go."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "gemm_4bit_forward" not in message and "quantization-bitsandbytes" not in message


# Before bitsandbytes is imported: the warnings are logged at its import.
for _logger in ("bitsandbytes.backends.cpu.ops", "kernels._internals.hf_hub"):
    logging.getLogger(_logger).addFilter(_NoHubKernelWarning())


def quantization_config(quantization: str, on_gpu: bool) -> Any:
    """The ``BitsAndBytesConfig`` for a mode, or None for full precision."""
    if quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401
        import torch
        from transformers import BitsAndBytesConfig
    except ImportError as error:
        raise ModelLoadError(
            f"IPROF_LLM_QUANT={quantization} needs bitsandbytes: pip install "
            "'interest-profiler[llm]', or set IPROF_LLM_QUANT=none"
        ) from error
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)  # LLM.int8 computes in float16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        # bf16 matmuls on GPU; CPU kernels want float32.
        bnb_4bit_compute_dtype=torch.bfloat16 if on_gpu else torch.float32,
    )


def load_model(llm: LLMSettings) -> tuple[Any, Any]:
    """The model (in eval mode, on the GPU when there is one) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_id, quantization = str(llm.model), llm.quant
    try:
        # An alias (smollm2) is converted once into <data_dir>/models and loaded from there.
        path = resolve_model(model_id, llm.models_dir)
    except BundledModelError as error:
        raise ModelLoadError(str(error)) from error
    except Exception as error:  # the GGUF conversion: gguf missing, a bad file, ...
        raise ModelLoadError(
            f"cannot convert IPROF_LLM_MODEL={model_id!r}: {error} "
            "(needs the llm extra: pip install 'interest-profiler[llm]')"
        ) from error
    on_gpu = torch.cuda.is_available()
    options: dict[str, Any] = {"dtype": torch.bfloat16 if on_gpu else torch.float32}
    if quantization == "int8":
        options["dtype"] = torch.float16  # else bitsandbytes casts (and warns) on every call
    config = quantization_config(quantization, on_gpu)
    if config is not None:
        options["quantization_config"] = config
        options["device_map"] = "auto" if on_gpu else "cpu"
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **options)
    except Exception as error:  # any loader failure: missing files, CUDA, bad config, ...
        hint = (
            ""
            if quantization == "none"
            else (f"; if this device cannot run {quantization}, set IPROF_LLM_QUANT=none")
        )
        raise ModelLoadError(f"cannot load IPROF_LLM_MODEL={model_id!r}: {error}{hint}") from error
    if config is None and on_gpu:
        model = model.to("cuda")  # type: ignore[arg-type]
    model.eval()
    return model, tokenizer
