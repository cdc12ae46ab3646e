"""The bundled MiniLM on ONNX Runtime against the same model on torch."""

import numpy as np
import pytest

from service.core.config import Settings
from service.embedding.encoder import load_embedder
from service.embedding.onnx import OnnxEmbedder

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow

TEXTS = [
    "Sourdough starter, rye loaves and a wood-fired oven",
    "The night sky: telescopes, nebulae and comets",
    "Jazz standards on a late-night piano",
    "Marathon training plans for beginners",
    "Baking bread at home",
    "Stargazing with a small telescope",
    "",  # empty text: still a unit vector
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


def test_onnx_gives_the_torch_vectors_and_exports_once(minilm, cache):
    onnx = load_embedder(None, backend="onnx", cache=cache)
    assert isinstance(onnx, OnnxEmbedder) and onnx.model_id == minilm.model_id
    vectors = onnx.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), minilm.dimension)
    cosine = (vectors * minilm.encode(TEXTS)).sum(axis=1)
    assert cosine.min() > 0.9999
    (exported,) = cache.glob("*/model.onnx")
    written = exported.stat().st_mtime_ns
    load_embedder(None, backend="onnx", cache=cache)
    assert exported.stat().st_mtime_ns == written  # found, not made again


def test_int8_is_close_keeps_neighbours_and_names_itself(minilm, cache):
    int8 = load_embedder(None, backend="onnx-int8", cache=cache)
    assert int8.model_id == minilm.model_id + "+onnx-int8"  # an index must be rebuilt for it
    vectors, reference = int8.encode(TEXTS), minilm.encode(TEXTS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert (vectors * reference).sum(axis=1).min() > 0.95
    # The nearest other text of each is the same with both.
    nearest = (vectors @ vectors.T - 2 * np.eye(len(TEXTS))).argmax(axis=1)
    expected = (reference @ reference.T - 2 * np.eye(len(TEXTS))).argmax(axis=1)
    assert nearest[:6].tolist() == expected[:6].tolist()


def test_the_backend_is_a_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("IPROF_EMBED_BACKEND", "onnx-int8")
    assert Settings(data_dir=tmp_path).embed_backend == "onnx-int8"
    monkeypatch.setenv("IPROF_EMBED_BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="embed_backend"):
        Settings(data_dir=tmp_path)
