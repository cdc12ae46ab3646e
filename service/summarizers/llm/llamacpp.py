"""The LLM summarizer on llama.cpp (llama-cpp-python): the bundled GGUF as it ships, on CPU.

transformers + bitsandbytes dequantizes every 4-bit matrix in plain torch at every step;
llama.cpp runs the GGUF's own 4-bit kernels: 1.7-1.9x the windows/s of nf4 on the demo windows
on a 2-core CPU (1.14x on MovieLens' longer prompts), in 37% of the memory (docs/PERFORMANCE.md,
"CPU engines side by side"). Everything around the
forward pass stays the summarizer's: the same prompt and chat text (the GGUF's tokenizer
through transformers, so the token ids are the ones the transformers path feeds), the same
prefilled answer start, the same grammar choosing every token (``decoding.best_token_of_row``),
the same stop at the closed JSON object, the same validation and fallback. A batch's rows are
decoded together, one token of every unfinished row per llama.cpp call, and what they all
start with (the system prompt, the example) is evaluated once for the batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.core.config import LLMSettings
from service.summarizers.extractive import ExtractiveSummarizer
from service.summarizers.llm.batching import ANSWER_PREFIX, JsonScanner
from service.summarizers.llm.bundled import BUNDLED, BundledModelError
from service.summarizers.llm.decoding import best_token_of_row
from service.summarizers.llm.grammar import AnswerGrammar
from service.summarizers.llm.loading import ModelLoadError
from service.summarizers.llm.rows import SUMMARY_LEAD, RowPlan
from service.summarizers.llm.summarizer import (
    ANSWER_TOKENS,
    Generation,
    LLMSummarizer,
    late_reason,
)
from service.summarizers.llm.support import Encode

ENGINE = "llama.cpp"
# One sequence's prompt and answer at most: prompts are ~400-1,500 tokens, answers at most
# llm_max_new_tokens.
SEQUENCE_TOKENS = 4096
# Tokens per llama_decode call while prompts are evaluated (llama.cpp's n_batch).
PROMPT_CHUNK = 512


class LlamaCppBatch:
    """One llama.cpp context holding up to ``rows`` sequences at once, one per window of a
    batch, in one KV cache of ``tokens`` (the batch planner's token budget bounds a batch's
    rows x longest row by the same number). Each decoding step evaluates the next token of
    every unfinished row in one call, so the weights are read once per step for the whole
    batch; the rows' shared start (the system prompt and the example) is evaluated once and
    shared by every row."""

    def __init__(self, gguf: Path, rows: int, tokens: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self._llama_cpp = llama_cpp
        model_params = llama_cpp.llama_model_default_params()
        self.model = _internals.LlamaModel(path_model=str(gguf), params=model_params, verbose=False)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = max(tokens, SEQUENCE_TOKENS)
        params.n_batch = max(PROMPT_CHUNK, rows)
        params.n_ubatch = params.n_batch
        params.n_seq_max = rows
        params.kv_unified = True  # one buffer: the shared prompt start is stored once
        params.n_threads = params.n_threads_batch = os.cpu_count() or 1
        self.context = _internals.LlamaContext(model=self.model, params=params, verbose=False)
        self.rows = rows
        self.vocabulary = self.model.n_vocab()
        self._capacity = int(params.n_batch)  # tokens one decode call takes
        self._batch = _internals.LlamaBatch(
            n_tokens=self._capacity, embd=0, n_seq_max=rows, verbose=False
        )

    def start(self, prompts: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Evaluate every row's prompt (row i is sequence i); each row's next-token logits."""
        if len(prompts) > self.rows:
            raise ValueError(f"{len(prompts)} rows for a context of {self.rows} sequences")
        self.context.kv_cache_clear()
        shared = _shared_start(prompts)
        self._evaluate([(0, position, token) for position, token in enumerate(prompts[0][:shared])])
        for row in range(1, len(prompts)):
            self.context.kv_cache_seq_cp(0, row, 0, shared)
        rest = [
            (row, position, prompt[position])
            for row, prompt in enumerate(prompts)
            for position in range(shared, len(prompt))
        ]
        lasts = {(row, len(prompt) - 1) for row, prompt in enumerate(prompts)}
        found = self._evaluate(rest, wanted=lasts)
        return [found[(row, len(prompt) - 1)] for row, prompt in enumerate(prompts)]

    def step(self, tokens: dict[int, tuple[int, int]]) -> dict[int, np.ndarray]:
        """Append one token to each row given (row -> (position, token)); their next logits."""
        entries = [(row, position, token) for row, (position, token) in tokens.items()]
        found = self._evaluate(entries, wanted={(row, pos) for row, pos, _ in entries})
        return {row: found[(row, position)] for row, (position, _) in tokens.items()}

    def _evaluate(
        self, entries: list[tuple[int, int, int]], wanted: set[tuple[int, int]] | None = None
    ) -> dict[tuple[int, int], np.ndarray]:
        """Decode (sequence, position, token) entries in chunks; the logits after each
        (sequence, position) in ``wanted``."""
        wanted = wanted or set()
        found: dict[tuple[int, int], np.ndarray] = {}
        for first in range(0, len(entries), self._capacity):
            chunk = entries[first : first + self._capacity]
            batch = self._batch.batch
            batch.n_tokens = len(chunk)
            for index, (row, position, token) in enumerate(chunk):
                batch.token[index] = token
                batch.pos[index] = position
                batch.n_seq_id[index] = 1
                batch.seq_id[index][0] = row
                batch.logits[index] = (row, position) in wanted
            self.context.decode(self._batch)
            for index, (row, position, _) in enumerate(chunk):
                if (row, position) in wanted:
                    pointer = self._llama_cpp.llama_get_logits_ith(self.context.ctx, index)
                    logits = np.ctypeslib.as_array(pointer, shape=(self.vocabulary,))
                    found[(row, position)] = logits.copy()
        return found


def _shared_start(prompts: Sequence[Sequence[int]]) -> int:
    """How many tokens every prompt starts with (each keeps at least its last one to itself:
    its logits are the answer's first)."""
    shared = min(len(prompt) for prompt in prompts) - 1
    for position in range(shared):
        if any(prompt[position] != prompts[0][position] for prompt in prompts):
            return position
    return max(shared, 0)


class LlamaCppSummarizer(LLMSummarizer):
    """``LLMSummarizer`` with llama.cpp generating: a batch's rows decoded together, one
    token per unfinished row per step, each row on its grammar (``decoding.best_token_of_row``),
    stopping when its JSON object closes."""

    engine = ENGINE

    def __init__(
        self,
        model: LlamaCppBatch,
        tokenizer: Any,
        llm: LLMSettings,
        fallback: ExtractiveSummarizer,
        encode: Encode | None = None,
        quantization: str = "gguf",
    ) -> None:
        super().__init__(model, tokenizer, llm, fallback, encode)
        self.quantization = quantization  # the GGUF's own: llm_quant is bitsandbytes'
        self.batch_size = min(self.batch_size, model.rows)  # no more rows than sequences
        self.batch_tokens = min(self.batch_tokens, model.context.n_ctx())

    @classmethod
    def load(
        cls, llm: LLMSettings, fallback: ExtractiveSummarizer, encode: Encode | None = None
    ) -> LlamaCppSummarizer:
        gguf = gguf_file(str(llm.model))
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = LlamaCppBatch(gguf, rows=llm.batch_size, tokens=llm.batch_tokens)
        except ImportError as error:
            raise ModelLoadError(
                "IPROF_LLM_BACKEND=llama-cpp needs llama-cpp-python: pip install "
                "'interest-profiler[llm]' (a C++ build), or set IPROF_LLM_BACKEND=transformers"
            ) from error
        except Exception as error:  # a bad file, an unknown architecture, ...
            raise ModelLoadError(f"llama.cpp cannot load {gguf.name}: {error}") from error
        return cls(model, tokenizer, llm, fallback, encode, quantization_of(str(llm.model)))

    def _prompt_budget(self) -> int:
        return SEQUENCE_TOKENS - self.max_new_tokens - ANSWER_TOKENS

    def generate(
        self, texts: Sequence[str], plans: Sequence[RowPlan] | None = None
    ) -> list[Generation]:
        """What ``LLMSummarizer.generate`` gives for the batch: greedy, from the prefilled
        answer start, each row on its plan's grammar when ``constrained``, within the batch's
        time limit (``llm_timeout_s`` a window)."""
        leads = [plan.lead for plan in plans] if plans else [SUMMARY_LEAD] * len(texts)
        row_plans: Sequence[RowPlan | None] = plans or [None] * len(texts)
        rows = [
            _Row(
                ids=self.tokenizer(text + ANSWER_PREFIX + lead, add_special_tokens=False)[
                    "input_ids"
                ],
                lead=lead,
                grammar=plan.grammar() if self.constrained and plan is not None else None,
            )
            for text, lead, plan in zip(texts, leads, row_plans, strict=True)
        ]
        limit = self.timeout_s * len(rows)
        started = time.perf_counter()
        logits = dict(enumerate(self.model.start([row.ids for row in rows])))
        while logits and time.perf_counter() - started < limit:
            chosen = {}
            for index, scores in logits.items():
                token = self._next_token(rows[index], scores)
                if token is not None:
                    chosen[index] = (len(rows[index].ids) + len(rows[index].answer) - 1, token)
            logits = self.model.step(chosen) if chosen else {}
        return [self._generation(row, late_reason(self.timeout_s, len(rows))) for row in rows]

    def _next_token(self, row: _Row, logits: np.ndarray) -> int | None:
        """Choose the row's next token and take it; None when the row is finished (its JSON
        object closed, the end token, or the token cap), so it is not decoded further."""
        token = self._choose(logits, row)
        if token == self.tokenizer.eos_token_id:
            row.finished = True
            return None
        row.answer.append(token)
        row.scanner.feed(self.tokenizer.decode([token], skip_special_tokens=True))
        row.finished = row.scanner.closed or len(row.answer) >= self.max_new_tokens
        return None if row.finished else token

    def _choose(self, logits: np.ndarray, row: _Row) -> int:
        """The greedy token, the grammar's choice when there is one (its log-probability noted
        while in the summary, as ``decoding.constrained_logits`` does)."""
        import torch

        scores = torch.from_numpy(logits)
        if row.grammar is None:
            return int(scores.argmax())
        tokens_left = self.max_new_tokens - len(row.answer)
        choice = best_token_of_row(row.grammar, scores, self.token_texts(), tokens_left)
        if choice is None:  # nothing fits (cannot happen with a usable vocabulary)
            choice = int(scores.argmax())
        if row.grammar.in_summary:
            row.logprobs.append(float(torch.log_softmax(scores.float(), dim=-1)[choice]))
        row.grammar.feed(self.token_texts().text(choice))
        return choice

    def _generation(self, row: _Row, late: str) -> Generation:
        return Generation(
            text=ANSWER_PREFIX
            + row.lead
            + self.tokenizer.decode(row.answer, skip_special_tokens=True),
            prompt_tokens=len(row.ids),
            new_tokens=len(row.answer),
            # Rows whose answer closed before the limit keep it; only the unfinished ones failed.
            failure=None if row.finished else late,
            summary_logprob=sum(row.logprobs) / len(row.logprobs) if row.logprobs else None,
        )


@dataclass
class _Row:
    """One window's generation in a batch: its prompt ids and what it has written so far."""

    ids: list[int]
    lead: str
    grammar: AnswerGrammar | None
    answer: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    scanner: JsonScanner = field(default_factory=JsonScanner)
    finished: bool = False


def gguf_file(model_id: str) -> Path:
    """The GGUF llama.cpp runs: a bundled model's (``smollm2``), or a path to a .gguf file."""
    bundled = BUNDLED.get(model_id)
    try:
        path = bundled.gguf_path() if bundled else Path(model_id)
    except BundledModelError as error:
        raise ModelLoadError(str(error)) from error
    if path.suffix == ".gguf" and not path.is_file():
        raise ModelLoadError(f"IPROF_LLM_MODEL={model_id!r}: no such GGUF file")
    if path.suffix != ".gguf" or not path.is_file():
        raise ModelLoadError(
            f"IPROF_LLM_BACKEND=llama-cpp runs GGUF files: IPROF_LLM_MODEL={model_id!r} is "
            "neither a bundled model nor a .gguf file (IPROF_LLM_BACKEND=transformers runs it)"
        )
    return path


def quantization_of(model_id: str) -> str:
    """What provenance calls the weights: the GGUF's quantization, from its file name
    ("gguf-q4_1"; "gguf" where the name does not say or the file is missing)."""
    bundled = BUNDLED.get(model_id)
    name = bundled.gguf_file if bundled else Path(model_id).name
    stem = name.removesuffix(".gguf").rsplit(".", 1)
    return f"gguf-{stem[1].lower()}" if len(stem) == 2 else "gguf"


def is_gguf_model(model_id: str) -> bool:
    """Whether llama.cpp can run ``model_id`` as it is (``auto`` picks it on CPU then)."""
    try:
        gguf_file(model_id)
    except ModelLoadError:
        return False
    return True
