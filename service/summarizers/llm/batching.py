"""Batched generation mechanics for the LLM summarizer: how prompts are grouped into batches,
when a generation stops, and what happens when the GPU runs out of memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# The answer is prefilled with this, so the model starts inside the JSON object we asked for
# instead of with "Sure! Here is..." (and a model that ignores the format fails fast).
ANSWER_PREFIX = '{"summary": "'


def plan_batches(lengths: Sequence[int], max_batch: int, max_tokens: int) -> list[list[int]]:
    """Group row indexes into batches of similar length.

    ``lengths`` are what each row will hold at most (prompt plus answer). Left padding makes
    every row as long as the longest, so a batch costs ``len(batch) * longest`` tokens of KV
    cache: sorting by length keeps padding small, and the token budget (not only the count)
    keeps that bounded, so a batch of long windows is smaller than one of short ones.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = max([lengths[i] for i in current] + [lengths[index]])
        if current and (len(current) >= max_batch or longest * (len(current) + 1) > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class JsonScanner:
    """Follows the characters of one answer and says when its top-level JSON object closed."""

    def __init__(self, prefix: str = ANSWER_PREFIX) -> None:
        self.depth, self.in_string, self.escaped, self.closed = 0, False, False, False
        self.feed(prefix)

    def feed(self, text: str) -> None:
        for char in text:
            if self.closed:
                return
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif char == "\\":
                    self.escaped = True
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
            elif char in "}]":
                self.depth -= 1
                self.closed = self.depth <= 0


def json_end_criteria(tokenizer: Any, batch_size: int) -> Any:
    """A transformers StoppingCriteria that ends each row when its JSON object is complete,
    so no token is spent after the answer (rows that finished early wait as padding)."""
    import torch
    from transformers import StoppingCriteria

    class JsonEnd(StoppingCriteria):  # type: ignore[misc]
        def __init__(self) -> None:
            self.scanners = [JsonScanner() for _ in range(batch_size)]

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            last = input_ids[:, -1].tolist()
            for scanner, token in zip(self.scanners, last):
                scanner.feed(tokenizer.decode([token], skip_special_tokens=True))
            return torch.tensor([s.closed for s in self.scanners], device=input_ids.device)

    return JsonEnd()


def with_oom_halving(
    run: Callable[[list[T]], list[Any]],
    batch: list[T],
    alone_failed: Callable[[T, Exception], Any],
) -> list[Any]:
    """``run(batch)``, one result per row in order. When the GPU runs out of memory, each half
    runs instead (recursively); a row that does not fit even alone gets ``alone_failed(row,
    error)`` and the rest of its batch is unaffected. Any other error propagates."""
    try:
        return run(batch)
    except Exception as error:
        if not _is_out_of_memory(error):
            raise
        if len(batch) == 1:
            _free_gpu_cache()
            return [alone_failed(batch[0], error)]
    _free_gpu_cache()
    middle = len(batch) // 2
    return with_oom_halving(run, batch[:middle], alone_failed) + with_oom_halving(
        run, batch[middle:], alone_failed
    )


def _is_out_of_memory(error: Exception) -> bool:
    import torch

    out_of_memory = getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(error, out_of_memory) or "out of memory" in str(error).lower()


def _free_gpu_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
