"""What one window's prompt and answer are made of: its event lines, the summary's prefilled
lead and the plan constrained decoding keeps the answer to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.core.records import Window
from service.summarizers.base import MAX_INTERESTS
from service.summarizers.llm.grammar import AnswerGrammar
from service.summarizers.llm.sense import summary_vocabulary
from service.summarizers.llm.support import window_labels
from service.summarizers.weighting import action_weight, activity_shares, window_recency

# The newest events say most about current interests; older ones only cost prompt tokens (and
# a small model loses the thread in a long prompt: 12 short lines work for a 135M SmolLM2).
MAX_PROMPT_EVENTS = 12
# Each event line is bounded, so one huge title cannot push every other event out of the prompt.
MAX_TITLE_CHARS = 120
MAX_ID_CHARS = 64
MAX_CATEGORIES = 5
# The answer starts prefilled, inside its summary: a small model left to open the sentence
# itself copies the first title it sees; after "Likes" it names topics. (No trailing space: the
# model's next token carries its own, as in the text it was trained on.) Where the window's
# items have categories, the lead goes on with the one that carries most of its activity: a
# 135M model names the window's genres but not in their order (a third of its summaries led
# with a minor one), and a summary must not mislead about what the window mostly is.
SUMMARY_LEAD = "Likes"


def describe_event_line(window_event: Any) -> str:
    """One prompt line per item event: id | categories | title. Item text is untrusted: angle
    brackets are neutralised so it cannot close the <items> block, and newlines are folded so
    it cannot start a new section. Categories come before the title, and the description and
    the action are left out: a small model copies what it reads first ("view 4.5", a title),
    and categories are what labels should be made of."""
    event, item = window_event.event, window_event.item
    if item is None:
        return f"{_clean(event.item_id[:MAX_ID_CHARS])} | | (unknown item)"
    fields = [
        item.item_id[:MAX_ID_CHARS],
        ", ".join(c[:MAX_ID_CHARS] for c in item.categories[:MAX_CATEGORIES]),
        item.title[:MAX_TITLE_CHARS],
    ]
    return " | ".join(_clean(field) for field in fields)


def leading_category(window: Window) -> str | None:
    """The category that carries most of the window's activity (None: no item has one)."""
    shares = activity_shares(window)
    return max(shares, key=lambda label: shares[label]) if shares else None


def summary_lead(window: Window, leading: str | None = None) -> str:
    """How the summary starts: "Likes" and the window's leading category ("Likes drama");
    ``leading`` where the caller has it already."""
    leading = leading or leading_category(window)
    if leading is None:
        return SUMMARY_LEAD
    # "Drama" reads "drama" inside a sentence; "IMAX" and "ML Engineering" keep their case.
    spoken = " ".join(w.lower() if w[1:].islower() else w for w in leading.split())
    return f"{SUMMARY_LEAD} {spoken}"


@dataclass(frozen=True)
class RowPlan:
    """What constrained decoding keeps one window's answer to: cite only its ``item_ids``;
    labels among its categories (``labels``, each with the items that carry it), the first
    the leading one (``first_label``); a summary that starts with ``lead`` and goes on in
    ``words`` only (the window's own and joining words, ``sense.summary_vocabulary``)."""

    item_ids: Sequence[str]
    labels: Mapping[str, Sequence[str]] = field(default_factory=dict)
    lead: str = SUMMARY_LEAD
    words: frozenset[str] | None = None
    first_label: str | None = None

    @classmethod
    def of(cls, window: Window) -> RowPlan:
        words = frozenset(summary_vocabulary(window))
        first = leading_category(window)
        return cls(
            window.item_ids, window_labels(window), summary_lead(window, first), words, first
        )

    def grammar(self) -> AnswerGrammar:
        # After a bare "Likes" the summary goes on with a space and a word; after a named
        # lead it may go on with a comma as well.
        return AnswerGrammar(
            self.item_ids,
            MAX_INTERESTS,
            self.labels,
            word_first=self.lead == SUMMARY_LEAD,
            summary_words=self.words,
            first_label=self.first_label,
        )


def select_events(window: Window, count: int) -> list[Any]:
    """Up to ``count`` events of the window, newest first; when some must go, the weakest
    oldest go first (strength: the action's weight times its recency)."""
    events = list(window.events)
    recency = window_recency(len(events))
    strength = [action_weight(e.event.type, e.event.value) * r for e, r in zip(events, recency)]
    keep = sorted(range(len(events)), key=lambda i: strength[i], reverse=True)[:count]
    return [events[i] for i in sorted(keep, reverse=True)]


def _clean(text: str) -> str:
    return " ".join(text.replace("<", "\u2039").replace(">", "\u203a").split())
