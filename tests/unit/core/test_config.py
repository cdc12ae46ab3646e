import sys

import pytest
from pydantic import ValidationError

from service.app import cli
from service.app.container import build_services
from service.core import config
from service.core.config import Settings
from service.core.records import WindowSpec


@pytest.mark.parametrize(
    ("text", "kind", "size", "seconds"),
    [("20e", "count", 20, 0.0), ("7d", "time", 0, 604_800.0), (" 12h ", "time", 0, 43_200.0)],
)
def test_window_spec_parses_counts_and_durations(text, kind, size, seconds):
    spec = WindowSpec.parse(text)
    assert (spec.kind, spec.size, spec.seconds) == (kind, size, seconds)


@pytest.mark.parametrize("text", ["", "20", "0e", "7w", "-3d", "e20"])
def test_window_spec_refuses_nonsense(text):
    with pytest.raises(ValueError, match="window must look like"):
        WindowSpec.parse(text)


def test_settings_read_prefixed_environment(monkeypatch):
    monkeypatch.setenv("IPROF_API_KEYS", " alpha, beta ,,")
    monkeypatch.setenv("IPROF_WINDOW", "7d")
    monkeypatch.setenv("IPROF_LLM_QUANT", "int8")
    settings = Settings()
    assert settings.api_keys == ["alpha", "beta"]
    assert settings.auth_enabled
    assert settings.window_spec == WindowSpec(kind="time", seconds=604_800.0)
    assert settings.llm_quant == "int8"


def test_settings_defaults_need_no_model_and_no_keys():
    settings = Settings()
    assert settings.llm_model is None and settings.embed_model is None
    assert settings.api_keys == [] and not settings.auth_enabled
    assert settings.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("name", "value"), [("IPROF_WINDOW", "weekly"), ("IPROF_LLM_QUANT", "fp3")]
)
def test_settings_refuse_bad_values(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_settings_refuse_a_quantization_this_machine_cannot_run(monkeypatch):
    monkeypatch.setattr(config, "_installed", lambda package: package != "bitsandbytes")
    with pytest.raises(ValidationError, match="pip install 'interest-profiler\\[llm\\]', or set"):
        Settings(llm_model="some/model", llm_quant="nf4")
    # Nothing to quantize without a model, and full precision needs nothing extra.
    assert Settings(llm_quant="int8").llm_quant == "int8"
    assert Settings(llm_model="some/model", llm_quant="none").llm_quant == "none"


def test_cli_names_the_setting_to_change(monkeypatch, capsys):
    monkeypatch.setattr(config, "_installed", lambda package: package != "bitsandbytes")
    monkeypatch.setenv("IPROF_LLM_MODEL", "some/model")
    monkeypatch.setattr(sys, "argv", ["iprof", "profile", "u1"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("error: IPROF_LLM_QUANT: ") and "IPROF_LLM_QUANT=none" in message


def test_the_fusion_settings_reach_the_recommender_and_negative_ones_are_refused(
    monkeypatch, settings
):
    changed = {"fusion_interests": 0.25, "new_item_boost": 1.2}
    services = build_services(settings.model_copy(update=changed), load_item_index=False)
    try:
        assert services.recommender.weights.interests == 0.25
        assert services.recommender.candidates.search.new_item_boost == 1.2
    finally:
        services.close()
    for variable, field in (
        ("IPROF_FUSION_INTERESTS", "fusion_interests"),
        ("IPROF_NEW_ITEM_BOOST", "new_item_boost"),
    ):
        monkeypatch.setenv(variable, "-1")
        with pytest.raises(ValidationError, match=field):
            Settings()
        monkeypatch.delenv(variable)
