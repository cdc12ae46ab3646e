"""Why interest retrieval ranks as it does: each suspected cause measured on its own, one run.

Usage:
    python scripts/diagnose_interests.py --data ../shared/data/ml-latest-small [--users N]
        [--embedder hashing] [--vectors CACHE.npy]

Same split, metrics and item vectors as scripts/evaluate.py. Each user's newest profile is
made by the service's own window cutting and extractive summarizer; then the interest-only
ranking (weighted reciprocal-rank fusion of one search per interest, as the recommender does)
is scored with one knob changed at a time: the label's share of the query, the evidence used
(the profile's evidence, or every window item carrying the label, or the user's recent items
of that label), the close-match cut, and the search depth. The centroid of the last 20 items
is the reference row.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from service.core.config import Settings
from service.embedding.encoder import load_embedder, normalize_rows
from service.evaluation.protocol import Interactions, score, temporal_split
from service.ingest.movielens import load_movielens
from service.profiling.windows import cut_windows
from service.retrieval.recommender import RRF_K
from service.summarizers.extractive import ExtractiveSummarizer, item_labels


def variants() -> dict[str, dict]:
    base = {"label": 1.0, "evidence": "profile", "cut": 0.5, "depth": "service"}
    rows = {"as the service does (label + mean of 5 evidence, cut 0.5)": base}
    rows["no close-match cut"] = {**base, "cut": 0.0}
    rows["full depth"] = {**base, "depth": "all"}
    rows["label only"] = {**base, "evidence": "none"}
    rows["evidence only (no label)"] = {**base, "label": 0.0}
    rows["label at 0.25"] = {**base, "label": 0.25}
    rows["all window items of the label"] = {**base, "evidence": "window"}
    rows["last 20 history items of the label"] = {**base, "evidence": "history"}
    rows["last 20 history items of the label, label 0.25"] = {
        **base,
        "evidence": "history",
        "label": 0.25,
    }
    rows["last 20 history items of the label, no label, no cut"] = {
        **base,
        "evidence": "history",
        "label": 0.0,
        "cut": 0.0,
    }
    rows["evidence only, no cut"] = {**base, "label": 0.0, "cut": 0.0}
    rows["evidence only, cut 0.7"] = {**base, "label": 0.0, "cut": 0.7}
    rows["evidence only, full depth"] = {**base, "label": 0.0, "depth": "all"}
    rows["all window items of the label, no label"] = {**base, "evidence": "window", "label": 0.0}
    rows["label at 0.1"] = {**base, "label": 0.1}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--users", type=int)
    parser.add_argument("--embedder")
    parser.add_argument("--vectors", type=Path, help="cache of the item vectors (.npy)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dataset = load_movielens(args.data)
    split = temporal_split(dataset.events)
    items = {item.item_id: item for item in dataset.items}
    item_ids = [item.item_id for item in dataset.items]
    data = Interactions(split.train, item_ids)
    embedder = load_embedder(args.embedder)
    if args.vectors and args.vectors.exists():
        vectors = np.load(args.vectors)
    else:
        vectors = embedder.encode([item.embedding_text() for item in dataset.items])
        if args.vectors:
            np.save(args.vectors, vectors)
    test = split.test
    if args.users and args.users < len(test):
        chosen = random.Random(args.seed).sample(sorted(test), args.users)
        test = {user: test[user] for user in chosen}
    settings = Settings()
    summarizer = ExtractiveSummarizer()
    profiles = {}
    for user in test:
        windows = cut_windows(split.train[user], items, settings.window_spec, 0.0)
        usable = [w for w in windows if w.closed or len(w.events) >= settings.min_window_events]
        window = (usable or windows[-1:])[-1]
        profiles[user] = (window, summarizer.interests(window))
    labels = sorted({i.label for _, interests in profiles.values() for i in interests})
    label_vectors = dict(zip(labels, embedder.encode(labels)))
    sizes = [len(w.events) for w, _ in profiles.values()]
    evidence = [len(i.evidence) for _, ints in profiles.values() for i in ints]
    print(f"window events: median {np.median(sizes):.0f}, min {min(sizes)}", flush=True)
    print(f"interests per profile: {np.mean([len(i) for _, i in profiles.values()]):.2f}")
    print(f"evidence per interest: mean {np.mean(evidence):.2f}")
    generic = np.mean([len(labels)])
    print(f"distinct labels: {generic:.0f} ({', '.join(labels[:20])})")
    label_matrix = normalize_rows(np.stack([label_vectors[label] for label in labels]))
    items_by_label = label_matrix @ normalize_rows(vectors).T
    print(f"label-vs-item cosine: mean {items_by_label.mean():.3f}")
    rows = {"centroid of the last 20 items (reference)": centroid_ranker(data, split, vectors)}
    for name, knobs in variants().items():
        rows[name] = interest_ranker(data, split, vectors, profiles, items, label_vectors, knobs)
    for name, ranker in rows.items():
        print(f"{name:60} {score(ranker, test)}", flush=True)
    return 0


def centroid_ranker(data: Interactions, split, vectors: np.ndarray) -> Callable:
    unit = normalize_rows(vectors)

    def rank(user: str) -> list[str]:
        rows = [data.item_index[e.item_id] for e in split.train[user][-20:]]
        return data.top(user, unit @ normalize_rows(unit[rows].mean(axis=0)))

    return rank


def interest_ranker(data, split, vectors, profiles, items, label_vectors, knobs) -> Callable:
    unit = normalize_rows(vectors)

    def evidence_rows(user: str, window, interest) -> list[int]:
        if knobs["evidence"] == "none":
            return []
        if knobs["evidence"] == "profile":
            ids = list(interest.evidence)
        elif knobs["evidence"] == "window":
            ids = [we.event.item_id for we in window.events if interest.label in item_labels(we)]
        else:
            ids = [
                e.item_id
                for e in split.train[user]
                if interest.label in items[e.item_id].categories
            ][-20:]
        return [data.item_index[i] for i in ids if i in data.item_index]

    def rank(user: str) -> list[str]:
        window, interests = profiles[user]
        seen = data.matrix[data.user_index[user]] > 0
        depth = len(unit) if knobs["depth"] == "all" else 50 + int(seen.sum()) + 50
        totals = np.zeros(len(unit))
        for interest in interests:
            rows = evidence_rows(user, window, interest)
            query = knobs["label"] * label_vectors[interest.label]
            if rows:
                query = query + unit[rows].mean(axis=0)
            similarity = unit @ normalize_rows(query)
            order = np.argsort(-similarity)[:depth]
            order = order[similarity[order] >= similarity[order[0]] * knobs["cut"]]
            order = order[~seen[order]]
            totals[order] += interest.weight / np.arange(RRF_K + 1, RRF_K + 1 + len(order))
        return data.top(user, np.where(totals > 0, totals, -1.0))

    return rank


if __name__ == "__main__":
    sys.exit(main())
