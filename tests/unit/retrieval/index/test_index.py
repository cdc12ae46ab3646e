import json
import logging
import time

import numpy as np
import pytest

from service.core.records import Item
from service.embedding.encoder import HashingEmbedder
from service.retrieval.index import choice as index_choice
from service.retrieval.index import gpu as gpu_search
from service.retrieval.index.build import VectorFile, build_index
from service.retrieval.index.choice import choose_index
from service.retrieval.index.folders import IndexMismatch, IndexMissing
from service.retrieval.index.search import load_index
from tests.conftest import topic_items


def test_build_then_load_and_search(tmp_path, embedder):
    items = topic_items()
    manifest = build_index([items[:7], items[7:]], embedder, tmp_path, progress=False)
    assert (manifest.count, manifest.factory, manifest.dimension) == (
        20,
        "Flat",
        embedder.dimension,
    )
    assert manifest.embedder == embedder.model_id
    on_disk = json.loads((tmp_path / "builds" / manifest.build_id / "manifest.json").read_text())
    assert on_disk["source_hash"] == manifest.source_hash
    index = load_index(tmp_path, embedder)
    query = embedder.encode(["baking piece about sourdough starters"])
    hits = index.search(query, 3)[0]
    assert hits[0][0] == "baking-00"
    assert all(item_id.startswith("baking") for item_id, _ in hits)
    np.testing.assert_allclose(
        index.vectors_of(["baking-00"])[0],
        embedder.encode([items[10].embedding_text()])[0],
        atol=1e-6,
    )


def test_rebuild_swaps_current_and_keeps_the_old_build_readable(tmp_path, embedder):
    first = build_index([topic_items(5)], embedder, tmp_path, progress=False)
    old = load_index(tmp_path, embedder)
    second = build_index([topic_items(10)], embedder, tmp_path, progress=False)
    assert (tmp_path / "CURRENT").read_text().strip() == second.build_id
    assert first.source_hash != second.source_hash
    assert len(load_index(tmp_path, embedder)) == 20
    assert len(old.search(embedder.encode(["jazz"]), 3)[0]) == 3  # in-flight readers unaffected


def test_an_index_for_another_embedder_is_refused(tmp_path, embedder):
    build_index([topic_items()], embedder, tmp_path, progress=False)
    with pytest.raises(
        IndexMismatch,
        match=r"built with hashing-256 \(dimension 256\).*hashing-64 \(dimension 64\)",
    ):
        load_index(tmp_path, HashingEmbedder(dimension=64))


def test_missing_or_corrupt_index_is_refused_with_a_clear_message(tmp_path, embedder):
    with pytest.raises(IndexMissing, match="iprof build-index"):
        load_index(tmp_path, embedder)
    manifest = build_index([topic_items()], embedder, tmp_path, progress=False)
    (tmp_path / "builds" / manifest.build_id / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexMismatch, match="cannot be read"):
        load_index(tmp_path, embedder)


def test_empty_catalog_builds_nothing(tmp_path, embedder):
    with pytest.raises(IndexMissing, match="empty"):
        build_index([], embedder, tmp_path, progress=False)
    assert not (tmp_path / "CURRENT").exists()


def test_the_index_type_follows_the_catalog_size_and_the_memory_budget():
    assert choose_index(1_000, 384).factory == "Flat"
    million = choose_index(1_000_000, 384)
    assert million.factory == "IVF1024,SQfp16" and million.nprobe == 16
    assert "732 MB" in million.reason  # half precision
    squeezed = choose_index(1_000_000, 384, memory_budget_mb=700)
    assert squeezed.factory == "IVF1024,PQ48" and "exceed" in squeezed.reason
    assert choose_index(100_000, 100, memory_budget_mb=1).factory == "IVF1024,PQ10"
    assert choose_index(60_000, 384).factory == "IVF1024,SQfp16"  # about 4 sqrt(n) lists


def test_large_catalogs_get_an_ivf_index_searched_with_per_call_nprobe(tmp_path, monkeypatch):
    monkeypatch.setattr(index_choice, "EXACT_SEARCH_LIMIT", 500)
    embedder = HashingEmbedder(dimension=32)
    items = [Item(f"i{n}", f"word{n % 97} other{n % 13} thing{n}") for n in range(3_000)]
    # Chunks as the store gives them: the vectors are streamed to disk a chunk at a time.
    manifest = build_index(
        [items[:1_000], items[1_000:2_500], items[2_500:]], embedder, tmp_path, progress=False
    )
    assert manifest.factory.startswith("IVF") and manifest.nprobe > 0
    assert manifest.choice.startswith("IVF:")
    index = load_index(tmp_path, embedder)
    exact = {i for i, _ in index.search(embedder.encode([items[5].title]), 5, nprobe=10_000)[0]}
    assert "i5" in exact


def test_a_running_service_follows_builds_made_elsewhere(tmp_path, embedder, monkeypatch):
    from service.retrieval.index import serving as services

    monkeypatch.setattr(services, "RELOAD_CHECK_SECONDS", 0.0)
    holder = services.IndexHolder(tmp_path, embedder)
    holder.load()
    assert not holder.loaded and "iprof build-index" in holder.problem
    first = build_index([topic_items(5)], embedder, tmp_path, progress=False)
    assert holder.get().manifest.build_id == first.build_id
    second = build_index([topic_items(10)], embedder, tmp_path, progress=False)
    assert holder.get().manifest.build_id == second.build_id
    # A broken build made current is refused and the last good index keeps serving.
    (tmp_path / "builds" / second.build_id / "manifest.json").write_text("{}")
    (tmp_path / "CURRENT").write_text(second.build_id + "\n")
    monkeypatch.setattr(holder, "_tried_build", None)
    assert len(holder.get()) == 20 and "unreadable manifest" in holder.problem


def test_an_idle_service_picks_up_a_new_build_and_logs_the_swap(tmp_path, embedder, caplog):
    from service.retrieval.index import serving as services

    first = build_index([topic_items(5)], embedder, tmp_path, progress=False)
    holder = services.IndexHolder(tmp_path, embedder)
    holder.load()
    holder.watch()
    try:
        with caplog.at_level(logging.INFO, logger="service.retrieval.index.serving"):
            second = build_index([topic_items(10)], embedder, tmp_path, progress=False)
            deadline = time.monotonic() + 10  # no request comes: the watcher alone
            while holder._index.manifest.build_id != second.build_id:
                assert time.monotonic() < deadline, "the new build was not picked up in 10 s"
                time.sleep(0.1)
    finally:
        holder.stop_watching()
    assert f"serving index build {second.build_id} (was {first.build_id})" in caplog.text


def test_over_the_memory_budget_an_ivf_pq_index_reranks_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(index_choice, "EXACT_SEARCH_LIMIT", 500)
    embedder = HashingEmbedder(dimension=32)
    items = [Item(f"i{n}", f"word{n % 97} other{n % 13} thing{n}") for n in range(3_000)]
    manifest = build_index([items], embedder, tmp_path, progress=False, memory_budget_mb=0.01)
    assert "PQ" in manifest.factory and manifest.choice.startswith("IVF-PQ")
    index = load_index(tmp_path, embedder)
    query = embedder.encode(["word5 other5"])
    found = index.search(query, 10, nprobe=10_000)[0]
    # The scores are the exact cosines of the stored vectors, not PQ approximations.
    exact = index.vectors_of([i for i, _ in found]) @ query[0]
    assert [round(s, 5) for _, s in found] == [round(float(x), 5) for x in exact]
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    truth = np.argsort(-(index.vectors @ query[0]))[:10]
    assert len({index.item_ids[r] for r in truth} & {i for i, _ in found}) >= 8


def test_vector_file_writes_a_numpy_file_chunk_by_chunk(tmp_path):
    path = tmp_path / "v.npy"
    parts = [np.random.default_rng(n).random((n * 7 + 1, 5), dtype=np.float32) for n in range(4)]
    with VectorFile(path, 5) as out:
        for part in parts:
            out.append(part)
    np.testing.assert_array_equal(np.load(path), np.concatenate(parts))
    assert np.load(path, mmap_mode="r").shape == (sum(len(p) for p in parts), 5)


def test_exact_search_with_torch_finds_the_exact_neighbours(tmp_path, monkeypatch):
    """The GPU search used where FAISS has no kernels for the card, run here on the CPU."""
    from service.retrieval.index.gpu import TorchExactSearch

    monkeypatch.setattr(index_choice, "EXACT_SEARCH_LIMIT", 500)
    monkeypatch.setattr(gpu_search, "UPLOAD_ROWS", 700)  # several slices
    embedder = HashingEmbedder(dimension=32)
    items = [Item(f"i{n}", f"word{n % 97} other{n % 13} thing{n}") for n in range(3_000)]
    build_index([items], embedder, tmp_path, progress=False)
    index = load_index(tmp_path, embedder)
    queries = embedder.encode([f"word{n} other{n % 13}" for n in range(20)])
    all_scores = np.asarray(index.vectors) @ queries.T  # items x queries
    best = -np.sort(-all_scores, axis=0)[:10].T
    index.gpu = TorchExactSearch(index.vectors, "cpu")
    scores, rows = index.search_rows(queries, 10)
    assert np.allclose(scores, best, atol=1e-5)  # the exact top 10, best first
    found = np.take_along_axis(all_scores, rows.T, axis=0).T
    assert np.allclose(found, scores, atol=1e-5)  # and the rows that score so (ties aside)
