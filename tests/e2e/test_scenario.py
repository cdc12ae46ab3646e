"""The issue's end-to-end scenario, in-process, with the real bundled MiniLM and default windows."""

import pytest
from fastapi.testclient import TestClient

from scripts.ops.smoke_client import run_scenario
from service.app.factory import create_app
from service.core.config import Settings


@pytest.mark.slow
def test_new_client_scenario_with_real_embedder(tmp_path, minilm):
    settings = Settings(data_dir=tmp_path / "data", index_dir=tmp_path / "index")
    with TestClient(create_app(settings, embedder=minilm)) as client:
        report = run_scenario(client)
    failed = [(name, detail) for name, ok, detail in report.results if not ok]
    assert failed == []
    assert len(report.results) >= 15
