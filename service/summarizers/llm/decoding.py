"""Greedy decoding kept on the answer grammar (``llm.grammar``), token by token.

Decoding is greedy, so only the best allowed token matters: the processor tries the model's
top candidates in score order, and only when none fits looks at every token that starts with
a character the grammar allows. When the remaining token budget gets close to what the answer
needs to close, the grammar wraps up (strings end, lists close), so the answer always closes
within ``max_new_tokens``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from service.summarizers.llm.grammar import AnswerGrammar

# The model's candidates checked before searching by first character: enough for the usual
# case (the model wants a token the grammar allows), cheap on a 150k vocabulary.
TOP_CANDIDATES = 32


class TokenTexts:
    """The text each token adds when it follows other text (a leading space included, which
    decoding a token alone drops in SentencePiece vocabularies); '' for special tokens and
    for tokens that are only part of a UTF-8 character, which the grammar never picks."""

    def __init__(self, tokenizer: Any) -> None:
        anchor = tokenizer.encode("x", add_special_tokens=False)[-1]
        head = tokenizer.decode([anchor])
        pairs = [[anchor, token] for token in range(len(tokenizer))]
        decoded = tokenizer.batch_decode(pairs, skip_special_tokens=True)
        self.texts = [
            text[len(head) :] if text.startswith(head) and "\ufffd" not in text else ""
            for text in decoded
        ]
        self.by_first_char: dict[str, list[int]] = defaultdict(list)
        for token, text in enumerate(self.texts):
            if text:
                self.by_first_char[text[0]].append(token)
        self.eos = tokenizer.eos_token_id

    def text(self, token: int) -> str:
        # A model's output layer may be wider than its tokenizer (padded for speed).
        return self.texts[token] if token < len(self.texts) else ""


def constrained_logits(
    token_texts: TokenTexts, grammars: list[AnswerGrammar], prompt_length: int, max_new: int
) -> Any:
    """A transformers ``LogitsProcessor`` that keeps each row of a greedy batch on its
    grammar: it lets through exactly one token per row, the best one the grammar allows.

    It also keeps, per row, the model's own log-probability (before the grammar had its say)
    of each token it let through while the row was in its summary: ``summary_logprobs``. A
    model that read the window wanted those words; when the grammar picked them from a flat
    distribution (a random model), they are the grammar's, not the model's."""
    import torch
    from transformers import LogitsProcessor

    class AnswerConstraint(LogitsProcessor):  # type: ignore[misc]
        def __init__(self) -> None:
            self.summary_logprobs: list[list[float]] = [[] for _ in grammars]

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            step = input_ids.shape[1] - prompt_length
            if step > 0:  # the tokens chosen at the previous step
                for grammar, token in zip(grammars, input_ids[:, -1].tolist()):
                    grammar.feed(token_texts.text(token))
            top = torch.topk(scores, min(TOP_CANDIDATES, scores.shape[1])).indices.tolist()
            logprobs = torch.log_softmax(scores.float(), dim=-1)
            allowed = torch.full_like(scores, float("-inf"))
            for row, grammar in enumerate(grammars):
                choice = _best_token(grammar, top[row], scores[row], token_texts, max_new - step)
                if choice is None:  # nothing fits (cannot happen with a usable vocabulary)
                    allowed[row] = scores[row]
                    continue
                allowed[row, choice] = scores[row, choice]
                if grammar.in_summary:
                    self.summary_logprobs[row].append(float(logprobs[row, choice]))
            return allowed

    return AnswerConstraint()


def best_token_of_row(
    grammar: AnswerGrammar, scores: Any, token_texts: TokenTexts, tokens_left: int
) -> int | None:
    """The same choice for one row's scores (a 1-d tensor), as an engine that decodes one
    sequence at a time makes it (``llm.llama_cpp``)."""
    import torch

    top = torch.topk(scores, min(TOP_CANDIDATES, scores.shape[0])).indices.tolist()
    return _best_token(grammar, top, scores, token_texts, tokens_left)


def _best_token(
    grammar: AnswerGrammar, top: list[int], scores: Any, token_texts: TokenTexts, tokens_left: int
) -> int | None:
    """The best-scoring token the grammar allows and after which the answer can still close
    in the tokens left (if none can, the best the grammar allows: the answer will be cut)."""
    if grammar.done:
        return int(token_texts.eos)

    def closes_in_time(text: str) -> bool:
        after = grammar.after_text(text)
        return after is not None and after.chars_to_close() < tokens_left

    for accept in (closes_in_time, grammar.accepts):
        for token in top:
            if accept(token_texts.text(token)):
                return token
        # Structure first (a quote ends a string when time is short), then any word.
        for chars in (grammar.next_chars() or {'"'}, set(_STARTERS)):
            choice = _best_starting_with(chars, accept, scores, token_texts)
            if choice is not None:
                return choice
    return None


def _best_starting_with(
    chars: set[str], accept: Any, scores: Any, token_texts: TokenTexts
) -> int | None:
    import torch

    candidates = [t for c in chars for t in token_texts.by_first_char.get(c, ())]
    if not candidates:
        return None
    order = scores[torch.tensor(candidates)].argsort(descending=True).tolist()
    return next((candidates[i] for i in order if accept(token_texts.text(candidates[i]))), None)


# Inside a string any character may come next: when the model's favourites all broke the
# form, a word is a safe way on.
_STARTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ "
