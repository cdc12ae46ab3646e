"""The benchmark script runs end to end (tiny model, tiny sizes). It measures nothing here:
numbers come from running it by hand (docs/PERFORMANCE.md)."""

import json

import pytest

from scripts.bench import bench_summarize


@pytest.mark.slow
def test_bench_summarize_prints_a_row_per_mode_and_batch(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--quant", "none,nf4", "--batch-sizes", "1,2", "--new-tokens", "2", "--repeats", "1"]
    assert bench_summarize.main([*argv, "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["quant"], r["batch"]) for r in rows] == [
        ("none", 1),
        ("none", 2),
        ("nf4", 1),
        ("nf4", 2),
    ]
    assert all(r["users_per_s"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    assert "vs b=1" in capsys.readouterr().out
