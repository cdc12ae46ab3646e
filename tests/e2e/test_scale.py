"""Scale work: the synthetic catalog, the fast static embedder, and the benchmark scripts run
end to end at tiny sizes (they measure nothing here; docs/PERFORMANCE.md has the numbers)."""

import re

import numpy as np
import pytest

from scripts.bench import bench_index, bench_refresh, load_test
from service.embedding.encoder import STATIC_MINILM, load_embedder
from service.evaluation.synthetic import item_topic, synthetic_events, synthetic_items


def test_synthetic_items_are_deterministic_chunk_independent_and_realistic():
    small_chunks = [item for chunk in synthetic_items(300, chunk=7) for item in chunk]
    one_chunk = next(synthetic_items(300, chunk=300))
    assert small_chunks == one_chunk
    assert [i.item_id for i in one_chunk[:3]] == ["s0", "s1", "s2"]
    assert next(synthetic_items(5, seed=1)) != one_chunk[:5]
    # Held-out items continue the same catalog.
    assert next(synthetic_items(100, first=200, chunk=64)) == one_chunk[200:264]
    titles = [len(i.title.split()) for i in one_chunk]
    texts = [len(i.text.split()) for i in one_chunk]
    assert min(titles) >= 2 and max(titles) <= 10 and 3 <= np.median(titles) <= 6
    assert min(texts) >= 15 and max(texts) <= 150 and 30 <= np.median(texts) <= 60
    assert all(1 <= len(i.categories) <= 3 for i in one_chunk)


def test_synthetic_events_favour_a_few_topics_per_user():
    events = list(synthetic_events(users=20, items=2_000, per_user=50))
    assert len(events) == 1_000 and len({e.event_id for e in events}) == 1_000
    for user in ("u0", "u7"):
        topics = [item_topic(int(e.item_id[1:])) for e in events if e.user_id == user]
        top3 = sum(count for _, count in _most_common(topics, 3))
        assert top3 >= 0.6 * len(topics)  # 80% from 2-3 favourites, 20% popular anywhere


def _most_common(values, n):
    from collections import Counter

    return Counter(values).most_common(n)


def test_static_embedder_is_normalised_and_groups_a_topic():
    embedder = load_embedder(STATIC_MINILM)
    items = next(synthetic_items(4_000, chunk=4_000))  # about 10 per topic
    vectors = embedder.encode([i.embedding_text() for i in items])
    assert vectors.shape == (4_000, 384) and embedder.dimension == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1)
    nearest = similarity.argmax(axis=1)
    same_topic = np.mean([item_topic(a) == item_topic(int(b)) for a, b in enumerate(nearest)])
    assert same_topic > 0.8  # chance: 1 in 400


@pytest.mark.slow
def test_bench_index_prints_build_and_search_tables(monkeypatch, capsys):
    from service.retrieval.index import choice as index_choice

    monkeypatch.setattr(index_choice, "EXACT_SEARCH_LIMIT", 1_000)
    monkeypatch.setattr(bench_index, "QUERIES", 50)
    monkeypatch.setattr(bench_index, "TIMED_QUERIES", 20)
    # Without --pq: PQ training is slow for a test; tests/test_itemindex.py covers IVF-PQ.
    assert bench_index.main(["--items", "3000"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| `build_index` \| [\d.]+ \| [\d,]+ \| [\d.]+ \|", out)
    for factory in ("SQfp16", "Flat"):  # the service's lists, and the same at full precision
        rows = re.findall(rf"\| IVF\d+,{factory} \| (\d+)[^|]*\| ([\d.]+) \|", out)
        assert len(rows) >= 3 and all(0.0 <= float(recall) <= 1.0 for _, recall in rows)


@pytest.mark.slow
def test_bench_refresh_prints_the_ratio_to_raw_encoding(capsys):
    assert bench_refresh.main(["--users", "15", "--repeats", "1", "--embedder", "hashing"]) == 0
    out = capsys.readouterr().out
    assert "15 users" in out
    # Rates print with thousands separators ("1,029.3"): every number column may carry one.
    assert re.search(r"\| `refresh_users` .* \| [\d,.]+ \| [\d,.]+ \| [\d,.]+ \|", out)


@pytest.mark.slow
def test_load_test_drives_a_real_server_without_errors(tmp_path, capsys):
    argv = ["--items", "300", "--users", "20", "--work", str(tmp_path), "--embedder", "hashing"]
    assert load_test.main([*argv, "--rates", "20", "--duration", "2", "--port", "8791"]) == 0
    out = capsys.readouterr().out
    row = re.search(
        r"\| 20 \| 40 \| (\d+) \| [\d.]+ \| ([\d.]+) \|.* ([\d.]+) \| ([^|]+) \|$", out, re.M
    )
    assert row and row.group(1) == "0" and float(row.group(2)) > 0
    shares = [int(share) for share in re.findall(r"(\d+)%", row.group(4))]
    assert float(row.group(3)) > 0 and len(shares) == 2 and 98 <= sum(shares) <= 102  # 2 workers
