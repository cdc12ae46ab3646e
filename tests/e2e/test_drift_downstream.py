"""A small run of scripts/eval/eval_drift_downstream.py on the real MovieLens (skipped without it):
next-window NDCG@10 of the drift-aware recommender against the same one ignoring drift."""

import json

import pytest

from scripts.eval import eval_drift_downstream as downstream
from service.evaluation import drift_streams as de
from tests.conftest import MOVIELENS


@pytest.mark.slow
@pytest.mark.skipif(
    not (MOVIELENS / "ratings.csv").is_file(), reason=f"no MovieLens at {MOVIELENS}"
)
def test_eval_drift_downstream_script_on_a_movielens_sample(tmp_path):
    out = tmp_path / "downstream.json"
    args = ["--data", str(MOVIELENS), "--users", "6", "--embedder", "hashing"]
    options = ["--weights", "0.1,0.5", "--sensitivities", "43,10", "--out", str(out)]
    assert downstream.main([*args, *options]) == 0
    report = json.loads(out.read_text())
    assert report["users"] == {"tuning": 3, "test": 3}
    per_user = de.STREAM_WINDOWS - downstream.FIRST_EVALUATED_WINDOW - 1
    for windows in report["windows_evaluated"].values():
        assert 0 < windows <= 3 * per_user
    assert report["signal"] == "interests"
    assert report["comparisons_at_service_weight"] == 2 * len(downstream.VARIANTS)
    assert list(report["sensitivities"]) == ["43", "10"]
    for result in report["sensitivities"].values():
        for variant in downstream.VARIANTS:
            chosen = result[variant]
            # The weights given, the service's own (always tried) and ignoring drift.
            assert chosen["chosen_weight"] in (0.03, 0.1, 0.5, 1.0)
            at_service_weight = chosen["test_service_weight"]
            assert at_service_weight["windows"] == chosen["test"]["windows"]
            applies, everywhere = chosen["test"], chosen["test_all_windows"]
            assert everywhere["windows"] == report["windows_evaluated"]["test"]
            assert 0.0 <= everywhere["ndcg@10"] <= 1.0
            # The weighting changes nothing where the variant does not apply.
            moved = (everywhere["better"], everywhere["worse"])
            assert moved == (
                (applies["better"], applies["worse"]) if applies["windows"] else (0, 0)
            )
