"""A sentence-transformers model run by ONNX Runtime: the same vectors, less CPU per text.

The model (a BERT-like encoder with mean pooling, as all-MiniLM-L6-v2) is exported once with
``torch.onnx``, pooling and normalisation included, and kept in a cache folder; later loads
read the file. ``int8`` also quantizes the weights of the matrix products (ONNX Runtime's
dynamic quantization): faster again, at some cost in quality, which docs/PERFORMANCE.md
measures. sentence-transformers' own ONNX backend needs optimum, which pins transformers 4.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_OPSET = 17


class OnnxEmbedder:
    def __init__(
        self, model_path: str, model_id: str, cache: Path, int8: bool, batch_size: int = 64
    ) -> None:
        import onnxruntime
        from sentence_transformers import SentenceTransformer

        source = SentenceTransformer(model_path, device="cpu")
        self.tokenizer = source.tokenizer
        self.max_length = int(source.max_seq_length or 256)
        dimension = source.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"{model_path}: the model does not say its embedding dimension")
        self.dimension = int(dimension)
        self.model_id = model_id + ("+onnx-int8" if int8 else "")  # int8 vectors differ a bit
        self.batch_size = batch_size
        file = export(source, cache / _cache_name(model_path), int8)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        self._session = onnxruntime.InferenceSession(
            str(file), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        # Sorted by length, as sentence-transformers does: batches pad to similar lengths.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress):
            rows = order[start : start + self.batch_size]
            encoded = self.tokenizer(
                [texts[row] for row in rows],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            feed = {name: encoded[name].astype(np.int64) for name in INPUTS}
            vectors[rows] = self._session.run(None, feed)[0]
        return vectors


def export(source: Any, folder: Path, int8: bool) -> Path:
    """The model as ONNX in ``folder`` (made once; a later call finds the file)."""
    final = folder / ("model_int8.onnx" if int8 else "model.onnx")
    if final.exists():
        return final
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / "model.onnx"
    if not plain.exists():
        _export_float(source, plain)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        partial = folder / "model_int8.onnx.partial"
        quantize_dynamic(
            str(plain), str(partial), weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=["MatMul"],
        )  # fmt: skip
        partial.replace(final)  # whole or absent: a crash mid-way leaves no half file
    return final


def _export_float(source: Any, file: Path) -> None:
    import torch

    class Pooled(torch.nn.Module):
        """The encoder, mean pooling over real tokens and L2 normalisation, as one graph."""

        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=-1)

    example = source.tokenizer(["an example", "a second, longer example"], padding=True)
    args = tuple(torch.tensor(example[name]) for name in INPUTS)
    partial = file.with_suffix(".onnx.partial")
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
    # The tracer warns of shape checks it freezes; none depends on batch or length for BERT.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trace(Pooled(source[0].auto_model).eval(), args, partial, axes)
    partial.replace(file)


def _trace(model: Any, args: tuple[Any, ...], file: Path, axes: dict[str, Any]) -> None:
    import torch

    torch.onnx.export(
        model,
        args,
        str(file),
        input_names=list(INPUTS),
        output_names=["embedding"],
        dynamic_axes={**axes, "embedding": {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript
    )


def _cache_name(model_path: str) -> str:
    # Keyed on the weights, so a changed model is exported anew.
    weights = Path(model_path) / "model.safetensors"
    stamp = f"{weights.stat().st_size}-{weights.stat().st_mtime_ns}" if weights.exists() else ""
    return hashlib.sha256(f"{Path(model_path).resolve()}|{stamp}".encode()).hexdigest()[:16]
