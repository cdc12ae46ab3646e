"""The LLM summarizer: a causal LM (optionally 4- or 8-bit through bitsandbytes) writes the
profile as JSON; every answer is validated and an unusable one falls back to the extractive
summary, with the reason recorded in the profile's provenance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.core.config import LLMSettings
from service.core.records import Summary, Window
from service.summarizers.base import GENERATION_FAILED, MAX_INTERESTS, MODEL_DOWN
from service.summarizers.extractive import ExtractiveSummarizer
from service.summarizers.llm.batching import (
    ANSWER_PREFIX,
    json_end_criteria,
    plan_batches,
    with_oom_halving,
)
from service.summarizers.llm.bundled import model_name
from service.summarizers.llm.decoding import TokenTexts, constrained_logits
from service.summarizers.llm.loading import load_model
from service.summarizers.llm.prompts import PromptTemplate, RenderedPrompt, load_template
from service.summarizers.llm.rows import (
    MAX_PROMPT_EVENTS,
    SUMMARY_LEAD,
    RowPlan,
    describe_event_line,
    select_events,
    summary_lead,
)
from service.summarizers.llm.sense import MIN_SUMMARY_LOGPROB, NOT_CHOSEN
from service.summarizers.llm.support import Encode, WindowSupport
from service.summarizers.llm.validation import InvalidAnswer, parse_answer

log = logging.getLogger(__name__)

PROMPT_NAME = "profile"
OUTPUT_EXCERPT_CHARS = 300
# The version of what decoding and validation hold an answer to (the grammar's plan, the
# nonsense checks): part of ``describe``, so new rules mean new profiles, as a new prompt does.
ANSWER_RULES = 2
ANSWER_TOKENS = 10  # the prefilled '{"summary": "Likes ' in any tokenizer, with room to spare


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    new_tokens: int
    failure: str | None = None  # why this output cannot be trusted even if it parses
    # The model's mean log-probability of the summary tokens the grammar let through (None:
    # unconstrained); see decoding.constrained_logits.
    summary_logprob: float | None = None


class LLMSummarizer:
    name = "llm"
    engine = "transformers"  # what runs the model (llm.llamacpp's subclass: llama.cpp)
    problem: str | None = None  # loaded: the model is there

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        llm: LLMSettings,
        fallback: ExtractiveSummarizer,
        encode: Encode | None = None,
        template: PromptTemplate | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_name(str(llm.model))
        self.quantization: str = llm.quant
        self.fallback = fallback
        self.template = template or load_template(PROMPT_NAME)
        self.max_new_tokens = llm.max_new_tokens
        self.batch_size = llm.batch_size
        self.batch_tokens = llm.batch_tokens
        self.timeout_s = llm.timeout_s
        self.constrained = llm.constrained
        # The embedder's encode, when the service has one: labels close to an item in its
        # space count as supported (see llm.support).
        self.encode = encode
        self._token_texts: TokenTexts | None = None  # built on first constrained generation
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # decoder-only models continue from the right edge

    @classmethod
    def load(
        cls, llm: LLMSettings, fallback: ExtractiveSummarizer, encode: Encode | None = None
    ) -> LLMSummarizer:
        model, tokenizer = load_model(llm)
        return cls(model, tokenizer, llm, fallback, encode)

    def describe(self) -> dict[str, Any]:
        # The prompt template is part of it: a new prompt means new profiles.
        return {
            "summarizer": self.name,
            "model": self.model_id,
            "quantization": self.quantization,
            "engine": self.engine,
            "prompt_template": f"{self.template.name}@{self.template.hash}",
            "answer_rules": ANSWER_RULES,
        }

    def render(self, window: Window) -> RenderedPrompt:
        """The prompt for a window, cut to the context budget: when not every event fits, the
        most recent and strongest ones are kept, and shown newest first."""
        chosen = select_events(window, MAX_PROMPT_EVENTS)
        while True:
            prompt = self.template.render(
                # One line per item: its view, click and like are one engagement.
                events="\n".join(dict.fromkeys(describe_event_line(e) for e in chosen)),
                max_interests=MAX_INTERESTS,
            )
            if len(chosen) <= 1 or self._prompt_tokens(prompt) <= self._prompt_budget():
                return prompt
            chosen = select_events(window, max(1, len(chosen) * 3 // 4))

    def _prompt_budget(self) -> int:
        context = getattr(self.model.config, "max_position_embeddings", None) or 4096
        return min(context, self.tokenizer.model_max_length) - self.max_new_tokens

    def _prompt_tokens(self, prompt: RenderedPrompt) -> int:
        encoded = self.tokenizer(self._chat_text(prompt), add_special_tokens=False, verbose=False)
        return len(encoded["input_ids"])

    def summarize(self, windows: Sequence[Window]) -> list[Summary]:
        prompts = [self.render(window) for window in windows]
        texts = [self._chat_text(prompt) for prompt in prompts]
        plans = [RowPlan.of(window) for window in windows]
        encoded = self.tokenizer(texts, add_special_tokens=False, verbose=False)
        # A row holds its prompt, the prefilled start of the answer and the answer itself.
        lengths = [len(ids) + ANSWER_TOKENS + self.max_new_tokens for ids in encoded["input_ids"]]
        generations: dict[int, Generation] = {}
        durations: dict[int, float] = {}
        for batch in plan_batches(lengths, self.batch_size, self.batch_tokens):
            started = time.perf_counter()
            try:
                outputs = with_oom_halving(
                    lambda rows: self.generate([texts[i] for i in rows], [plans[i] for i in rows]),
                    batch,
                    lambda row, error: Generation("", lengths[row], 0, failure="out of GPU memory"),
                )
            except Exception as error:  # the model must never take the service down
                log.exception("generation failed for a batch of %d windows", len(batch))
                reason = f"generation failed ({type(error).__name__})"
                outputs = [Generation("", lengths[i], 0, failure=reason) for i in batch]
            elapsed_ms = (time.perf_counter() - started) * 1000 / len(batch)
            for index, output in zip(batch, outputs, strict=True):
                generations[index], durations[index] = output, elapsed_ms
            # Progress: on a CPU a batch takes a while, and a refresh round is many batches.
            log.info(
                "LLM (%s): %d of %d windows written, %.1f s a window",
                self.engine,
                len(generations),
                len(windows),
                elapsed_ms / 1000,
            )
        if len(generations) != len(windows):  # the Summarizer contract: one per window, in order
            raise RuntimeError(f"{len(generations)} generations for {len(windows)} windows")
        return [
            self._summary(window, prompts[i], generations[i], durations[i])
            for i, window in enumerate(windows)
        ]

    def generate(
        self, texts: Sequence[str], plans: Sequence[RowPlan] | None = None
    ) -> list[Generation]:
        """Greedy generation for one batch of chat texts, left-padded to one length, each row
        starting inside the JSON answer, after its plan's summary lead (``SUMMARY_LEAD``
        without a plan), and stopping when its object is closed. With ``plans`` and
        ``constrained``, every row is kept to the answer's JSON form and to its plan (see
        ``RowPlan`` and ``grammar``)."""
        import torch

        leads = [plan.lead for plan in plans] if plans else [SUMMARY_LEAD] * len(texts)
        prefilled = [text + ANSWER_PREFIX + lead for text, lead in zip(texts, leads)]
        encoded = self.tokenizer(
            prefilled, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.model.device)
        json_end = json_end_criteria(self.tokenizer, len(texts))
        processors = []
        if self.constrained and plans is not None:
            grammars = [plan.grammar() for plan in plans]
            prompt_length = encoded["input_ids"].shape[1]
            processors.append(
                constrained_logits(self.token_texts(), grammars, prompt_length, self.max_new_tokens)
            )
        # The limit is per window: a batch of n windows may take n times it (a batch shares
        # its steps, so it usually takes far less).
        limit = self.timeout_s * len(texts)
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                max_time=limit,  # stops generating, keeps what it has
                logits_processor=processors,
                **self._length_limits(json_end),
            )
        confidences = [
            processors[0].summary_logprobs[row] if processors else [] for row in range(len(texts))
        ]
        timed_out = time.perf_counter() - started >= limit
        late = late_reason(self.timeout_s, len(texts))
        # Rows whose answer closed before the limit keep it; only the unfinished ones failed.
        failures = [late if timed_out and not s.closed else None for s in json_end.scanners]
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        decoded = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        pad = self.tokenizer.pad_token_id
        return [
            Generation(
                text=ANSWER_PREFIX + lead + text,
                prompt_tokens=int(mask.sum()),
                new_tokens=int((row != pad).sum()),
                failure=failure,
                summary_logprob=sum(logprobs) / len(logprobs) if logprobs else None,
            )
            for text, lead, mask, row, failure, logprobs in zip(
                decoded, leads, encoded["attention_mask"], new_tokens, failures, confidences
            )
        ]

    def _length_limits(self, json_end: Any) -> dict[str, Any]:
        """How long an answer may run: up to ``max_new_tokens``, stopping once its JSON object
        is closed (a benchmark's subclass fixes the length instead)."""
        return {"max_new_tokens": self.max_new_tokens, "stopping_criteria": [json_end]}

    def token_texts(self) -> TokenTexts:
        if self._token_texts is None:
            self._token_texts = TokenTexts(self.tokenizer)
        return self._token_texts

    def _chat_text(self, prompt: RenderedPrompt) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": prompt.system}]
            if prompt.example:
                messages += [
                    {"role": "user", "content": prompt.example[0]},
                    {"role": "assistant", "content": prompt.example[1]},
                ]
            messages.append({"role": "user", "content": prompt.user})
            return str(
                self.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=False
                )
            )
        example = "\n\n".join(prompt.example or ())
        return "\n\n".join(part for part in (prompt.system, example, prompt.user) if part) + "\n"

    def _summary(
        self, window: Window, prompt: RenderedPrompt, generation: Generation, duration_ms: float
    ) -> Summary:
        provenance = {
            **self.describe(),
            "prompt_hash": prompt.hash,
            "generation": {
                "do_sample": False,
                "max_new_tokens": self.max_new_tokens,
                "constrained": self.constrained,
                "summary_lead": summary_lead(window),  # prefilled: the model wrote the rest
            },
            "tokens": {"prompt": generation.prompt_tokens, "generated": generation.new_tokens},
            "fallback_reason": None,
            "duration_ms": round(duration_ms, 2),
        }
        if generation.failure:
            provenance["transient"] = GENERATION_FAILED  # a timeout or a crash: try again later
        try:
            if generation.failure:
                raise InvalidAnswer(generation.failure, GENERATION_FAILED)
            _check_confidence(generation)
            parsed = parse_answer(generation.text, window, WindowSupport(window, self.encode))
        except InvalidAnswer as reason:
            fallback = self.fallback.summarize_one(window, fallback_reason=str(reason))
            provenance.update(
                summarizer=self.fallback.name,
                fallback_reason=str(reason),
                fallback_check=reason.check,
                llm_output_excerpt=generation.text[:OUTPUT_EXCERPT_CHARS],
            )
            return Summary(fallback.summary, fallback.interests, provenance)
        provenance["dropped_interests"] = parsed.dropped
        return Summary(parsed.summary, parsed.interests, provenance)


def late_reason(timeout_s: float, rows: int) -> str:
    """The fallback reason of a window whose answer was not closed in time."""
    batch = f", {timeout_s * rows:g} s for its batch of {rows}" if rows > 1 else ""
    return (
        f"generation ran past its time limit ({timeout_s:g} s a window{batch}): "
        "raise IPROF_LLM_TIMEOUT_S"
    )


def _check_confidence(generation: Generation) -> None:
    """A summary whose words the model did not want (the grammar chose them) is not its own."""
    mean = generation.summary_logprob
    if mean is not None and mean < MIN_SUMMARY_LOGPROB:
        raise InvalidAnswer(
            f"summary rejected, {NOT_CHOSEN}: the model gave its words a mean log-probability"
            f" of {mean:.1f} (below {MIN_SUMMARY_LOGPROB:g}); the grammar chose them",
            NOT_CHOSEN,
        )


class UnavailableLLM:
    """Stands in for an LLM that failed to load: every profile is the extractive one, with the
    load error as its ``fallback_reason``, and readiness reports the problem."""

    name = "llm"
    problem: str | None  # set to the load error

    def __init__(
        self,
        model_id: str,
        quantization: str,
        problem: str,
        fallback: ExtractiveSummarizer,
        engine: str = LLMSummarizer.engine,
    ):
        self.model_id, self.quantization, self.problem = model_id, quantization, problem
        self.engine = engine
        self.fallback = fallback
        template = load_template(PROMPT_NAME)
        self.prompt_template = f"{template.name}@{template.hash}"

    def describe(self) -> dict[str, Any]:
        # The loaded model's description: stored LLM profiles stay valid while the model is
        # down (nothing is overwritten by a fallback), and the fallbacks made meanwhile are
        # marked transient, so they are made again once the model answers.
        return {
            "summarizer": self.name,
            "model": self.model_id,
            "quantization": self.quantization,
            "engine": self.engine,
            "prompt_template": self.prompt_template,
            "answer_rules": ANSWER_RULES,
        }

    def summarize(self, windows: Sequence[Window]) -> list[Summary]:
        reason = f"the LLM is not loaded: {self.problem}"
        summaries = []
        for window in windows:
            fallback = self.fallback.summarize_one(window, fallback_reason=reason)
            provenance = {
                **fallback.provenance,
                "model": self.model_id,
                "quantization": self.quantization,
                "transient": MODEL_DOWN,
                "fallback_check": MODEL_DOWN,
            }
            summaries.append(Summary(fallback.summary, fallback.interests, provenance))
        return summaries
