"""Profile quality on MovieLens windows: the LLM summarizer beside the extractive one.

Usage:
    python scripts/eval/eval_profiles.py --movielens DIR [--windows 200] [--model smollm2|tiny]
        [--quant nf4] [--batch-size 8] [--demo] [--out results.json]

``--model tiny`` is the tests' tiny random Llama (``tests/fixtures/tiny_llm.py``): every one of its
answers must fall back. ``--demo`` adds every closed window of the bundled demo users. For each
set of windows the LLM's row says how many answers passed (its own profile), how many of those
kept the model's summary (the rest had it rebuilt from the labels: a looping or empty one), and
the checks the rejected ones failed (``llm.sense``, ``llm.validation``).

One closed 20-event window is drawn from each of ``--windows`` users (a fixed seed), and both
summarizers profile the same windows in one run. For each it prints: the share of profiles that
are the summarizer's own (for the LLM: it passed validation, no ``fallback_reason``); the share
of interest labels with a word that is a genre, tag or title word of the label's own evidence
items (plain words, plural ``s`` stripped: deliberately simpler than the validator's check,
which looks at the whole window and, with the embedder, at embedding distance); interests per
profile, summary length in words, and seconds per window; for the LLM also how often its first
label is the extractive profile's first (the window's most weighted category) and how many of
its labels the extractive profile has too. The LLM's answers are validated as in
the service (with the MiniLM embedder), and the reasons for its fallbacks are counted.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from service.core.config import Settings
from service.core.records import Item, Summary, Window, WindowSpec
from service.embedding.encoder import load_embedder
from service.ingest.movielens import movielens_events, movielens_items
from service.profiling.windows import cut_windows
from service.summarizers.base import Summarizer
from service.summarizers.extractive import ExtractiveSummarizer
from service.summarizers.factory import build_summarizer

_WORD = re.compile(r"[a-z0-9]+")
_MINOR = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "of",
        "in",
        "on",
        "for",
        "to",
        "with",
        "about",
        "from",
        "by",
        "at",
        "or",
    ]
)


def plain_words(text: str) -> set[str]:
    words = set()
    for word in _WORD.findall(text.lower().replace("sci-fi", "science fiction")):
        if len(word) > 2 and word not in _MINOR:
            words.add(word[:-1] if word.endswith("s") and len(word) > 3 else word)
    return words


def item_words(item: Item) -> set[str]:
    # Genres, tags (the item text) and title words; a title's year is not a word of it.
    return plain_words(
        " ".join([re.sub(r"\(\d{4}\)", "", item.title), *item.categories, item.text])
    )


def sample_windows(directory: Path, count: int, seed: int = 19, per_user: int = 1) -> list[Window]:
    """Closed 20-event windows of ``count`` users (a fixed shuffle): one each, or up to
    ``per_user`` distinct ones (ml-latest-small has 610 users; two each pass 1,000 windows)."""
    items = {item.item_id: item for item in movielens_items(directory)}
    by_user: dict[str, list[Any]] = {}
    for event in movielens_events(directory):
        by_user.setdefault(event.user_id, []).append(event)
    users = sorted(by_user)
    random.Random(seed).shuffle(users)
    windows = []
    for user in users[:count]:
        events = sorted(by_user[user], key=lambda e: (e.ts, e.event_id))
        closed = [w for w in cut_windows(events, items, WindowSpec.parse("20e"), 1e12) if w.closed]
        if not closed:
            continue
        draw = random.Random(f"{seed}:{user}")
        if per_user == 1:  # as the runs before the option drew
            windows.append(draw.choice(closed))
        else:
            windows += draw.sample(closed, min(per_user, len(closed)))
    return windows


def demo_windows() -> list[Window]:
    """Every closed window of the bundled demo users (20 events each)."""
    from service.ingest.demo import demo_catalog
    from service.ingest.demo_events import demo_events

    items = {item.item_id: item for item in demo_catalog()}
    by_user: dict[str, list[Any]] = {}
    for event in demo_events():
        by_user.setdefault(event.user_id, []).append(event)
    windows = []
    for user in sorted(by_user):
        events = sorted(by_user[user], key=lambda e: (e.ts, e.event_id))
        cut = cut_windows(events, items, WindowSpec.parse("20e"), 1e12)
        windows += [w for w in cut if w.closed]
    return windows


def label_matches(summary: Summary, window: Window) -> list[bool]:
    items = {we.item.item_id: we.item for we in window.events if we.item is not None}
    matches = []
    for interest in summary.interests:
        evidence = [items[i] for i in interest.evidence if i in items]
        words = set().union(*(item_words(item) for item in evidence)) if evidence else set()
        matches.append(bool(plain_words(interest.label) & words))
    return matches


def run(
    summarizer: Summarizer, windows: list[Window], batch: int, budget_s: float
) -> tuple[list[Summary], float]:
    """Summaries of the windows in batches, stopping after the batch that passes ``budget_s``."""
    summaries: list[Summary] = []
    started = time.perf_counter()
    for start in range(0, len(windows), batch):
        if time.perf_counter() - started > budget_s:
            break
        summaries += summarizer.summarize(windows[start : start + batch])
        print(f"  {summarizer.name}: {len(summaries)}/{len(windows)}", file=sys.stderr, flush=True)
    return summaries, time.perf_counter() - started


def figures(name: str, summaries: list[Summary], windows: list[Window], seconds: float) -> dict:
    own = [s for s in summaries if not s.provenance.get("fallback_reason")]
    matches = [m for s, w in zip(summaries, windows) for m in label_matches(s, w)]
    own_matches = [
        m
        for s, w in zip(summaries, windows)
        if not s.provenance.get("fallback_reason")
        for m in label_matches(s, w)
    ]
    reasons = Counter(
        str(s.provenance.get("fallback_check") or s.provenance["fallback_reason"])
        for s in summaries
        if s.provenance.get("fallback_reason")
    )
    rebuilt = sum(1 for s in own if set(s.provenance.get("dropped_interests") or {}) & _REBUILT)
    dropped: Counter[str] = Counter()
    for s in own:
        dropped.update(s.provenance.get("dropped_interests") or {})
    return {
        "summarizer": name,
        "windows": len(summaries),
        "own_share": round(len(own) / len(summaries), 3),
        "own_share_interval": wilson_interval(len(own), len(summaries)),
        "own": len(own),
        "own_summary_rebuilt": rebuilt,
        "label_match_share": round(sum(matches) / max(1, len(matches)), 3),
        "own_label_match_share": round(sum(own_matches) / max(1, len(own_matches)), 3),
        "interests_per_profile": round(statistics.mean(len(s.interests) for s in summaries), 2),
        "summary_words_median": statistics.median(len(s.summary.split()) for s in summaries),
        "seconds_per_window": round(seconds / len(summaries), 3),
        "fallback_reasons": dict(reasons.most_common()),
        "dropped_interests": dict(dropped.most_common()),
    }


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a share: honest near 0 and 1, where pass rates are."""
    if trials == 0:
        return (0.0, 1.0)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    half /= 1 + z * z / trials
    return (round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3))


# Why a passing answer's summary was replaced by one built from its labels.
_REBUILT = frozenset({"looping summary", "empty summary", "sensitive summary"})


def example(window: Window, llm: Summary, extractive: Summary) -> dict:
    return {
        "items": [
            f"{we.item.title} [{', '.join(we.item.categories)}]"
            for we in window.events
            if we.item is not None
        ][:20],
        "llm": {
            "summary": llm.summary,
            "interests": [(i.label, i.weight, list(i.evidence)) for i in llm.interests],
            "fallback_reason": llm.provenance.get("fallback_reason"),
            # What the model wrote, where it was rejected.
            "output_excerpt": llm.provenance.get("llm_output_excerpt"),
        },
        "extractive": {
            "summary": extractive.summary,
            "interests": [i.label for i in extractive.interests],
        },
    }


def agreement(summaries: list[Summary], reference: list[Summary]) -> dict[str, float]:
    """How the labels compare with the extractive profile of the same window (its labels are
    the window's categories ranked by weighted count): the share whose first label is the
    same, and the share of labels that are among the reference's."""
    same_first = [
        bool(s.interests and r.interests) and s.interests[0].label == r.interests[0].label
        for s, r in zip(summaries, reference)
    ]
    shared = [
        i.label.lower() in {j.label.lower() for j in r.interests}
        for s, r in zip(summaries, reference)
        for i in s.interests
    ]
    return {
        "first_label_as_extractive": round(sum(same_first) / max(1, len(same_first)), 3),
        "labels_in_extractive": round(sum(shared) / max(1, len(shared)), 3),
    }


def pick_examples(summaries: list[Summary], count: int) -> list[int]:
    """Indexes of ``count`` windows spread over the run, the LLM's own profiles first (what a
    reader judges is what the model wrote); fallbacks fill in when there are too few."""
    own = [i for i, s in enumerate(summaries) if not s.provenance.get("fallback_reason")]
    rest = [i for i in range(len(summaries)) if i not in set(own)]
    chosen = []
    for pool in (own, rest):
        wanted = count - len(chosen)
        if wanted > 0 and pool:
            step = max(1, len(pool) // wanted)
            chosen += pool[::step][:wanted]
    return sorted(chosen)


def print_table(rows: list[dict]) -> None:
    print(
        "| summarizer | windows | own profile (no fallback) | labels matching their evidence "
        "| same, own profiles only | interests/profile | summary words (median) | s/window |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['summarizer']} | {r['windows']} | {r['own_share']:.1%} "
            f"| {r['label_match_share']:.1%} | {r['own_label_match_share']:.1%} "
            f"| {r['interests_per_profile']} | {r['summary_words_median']} "
            f"| {r['seconds_per_window']} |"
        )
    for r in rows:
        if r["summarizer"] != "extractive" and "own" in r:
            low, high = r["own_share_interval"]
            print(
                f"{r['summarizer']}: {r['own']}/{r['windows']} passed (95% interval "
                f"{low:.1%}-{high:.1%}); of those {r['own_summary_rebuilt']} had the summary "
                "rebuilt from the labels"
            )
        if r["fallback_reasons"] or r["dropped_interests"]:
            print(f"{r['summarizer']}: fallbacks {r['fallback_reasons']}")
            print(f"{r['summarizer']}: dropped interests {r['dropped_interests']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LLM vs extractive profiles on MovieLens.")
    parser.add_argument("--movielens", type=Path, required=True)
    parser.add_argument("--windows", type=int, default=200, help="users, one window each")
    parser.add_argument("--per-user", type=int, default=1, help="windows drawn per user")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--quant", default="nf4")
    parser.add_argument("--backend", default="auto", help="IPROF_LLM_BACKEND: auto, llama-cpp, ...")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=Path("./data"))  # converted models
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--demo", action="store_true", help="add the demo users' windows")
    parser.add_argument(
        "--budget-s", type=float, default=float("inf"), help="stop the LLM after this long"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    windows = sample_windows(args.movielens, args.windows, per_user=args.per_user)
    print(f"{len(windows)} windows of 20 ratings, up to {args.per_user} a user", flush=True)
    movielens_count = len(windows)
    if args.demo:
        windows += demo_windows()
        print(f"{len(windows) - movielens_count} demo windows of 20 events", flush=True)
    model = args.model
    if model == "tiny":  # the tests' random model, built where converted models go
        from tiny_llm import build_tiny_llm  # scripts/ is on the path of a script it runs

        model = str(build_tiny_llm(args.data_dir / "models" / "tiny-random-llama"))
    settings = Settings(
        data_dir=args.data_dir,
        llm_model=model,
        llm_quant=args.quant,
        llm_backend=args.backend,
        llm_batch_size=args.batch_size,
        llm_max_new_tokens=args.max_new_tokens,
        llm_timeout_s=600,
    )
    encode = load_embedder(None).encode  # the service validates with its embedder
    llm = build_summarizer(settings.llm, encode=encode)
    rows, results = [], {}
    extractive, seconds = run(ExtractiveSummarizer(), windows, args.batch_size, float("inf"))
    rows.append(figures("extractive", extractive, windows, seconds))
    results["llm"], seconds = run(llm, windows, args.batch_size, args.budget_s)
    done = len(results["llm"])
    results["extractive"] = extractive[:done]
    if done < len(windows):  # the same windows side by side
        rows.append(figures(f"extractive, first {done}", extractive[:done], windows, 0.0))
        rows[-1]["seconds_per_window"] = rows[0]["seconds_per_window"]
    described = llm.describe()
    label = f"llm ({described['model']}, {described.get('engine')}, {described['quantization']})"
    rows.append(figures(label, results["llm"], windows, seconds))
    llm_row = rows[-1]
    llm_row.update(agreement(results["llm"], results["extractive"]))
    if args.demo and done > movielens_count:  # each source of windows on its own row too
        name = rows[-1]["summarizer"]
        parts = {"MovieLens": slice(0, movielens_count), "demo": slice(movielens_count, done)}
        for part, span in parts.items():
            share = seconds * (span.stop - span.start) / done
            rows.append(figures(f"{name}, {part}", results["llm"][span], windows[span], share))
    print_table(rows)
    print(
        f"llm against extractive: first label the same {llm_row['first_label_as_extractive']:.1%}"
        f", labels among extractive's {llm_row['labels_in_extractive']:.1%}"
    )
    examples = [
        example(windows[i], results["llm"][i], results["extractive"][i])
        for i in pick_examples(results["llm"], args.examples)
    ]
    for number, shown in enumerate(examples, start=1):
        print(f"\nexample {number}:", json.dumps(shown, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "examples": examples}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
