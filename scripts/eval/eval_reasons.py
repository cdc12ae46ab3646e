"""Are the recommendations' reasons true? Measured on the demo data or a MovieLens folder.

Usage:
    python scripts/eval/eval_reasons.py [--movielens DIR] [--users 100] [--k 10] [--work DIR]

Loads the data into a fresh service in ``--work`` (a temporary folder by default) with
`iprof demo`, then asks for ``--k`` recommendations for up to ``--users`` users (every user
of the demo; a fixed-seed sample of MovieLens) and judges each reason by the data:

- "matches your interest 'X'" (also "new here; matches ..."): true when the item shares a
  category with at least one of the interest's evidence items (the issue's measure; the service
  says it only of items carrying a category that half the evidence carries, or the label);
- "people who chose 'Y' also chose this": true when some other user chose both Y and the item;
- anything else ("popular with other users", "close to your recent profile as a whole", "near
  your interest ..., though not of its kind") is counted, not judged.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

INTEREST = re.compile(r"matches your interest '(.*)'$")
PEOPLE = re.compile(r"^people who chose '(.*)' also chose this$")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="How often the recommendations' reasons hold.")
    parser.add_argument("--movielens", type=Path)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="eval-reasons-"))
    os.environ.update(IPROF_DATA_DIR=str(work / "data"), IPROF_INDEX_DIR=str(work / "index"))
    load = [str(Path(sys.executable).parent / "iprof"), "demo"]
    if args.movielens:
        load += ["--movielens", str(args.movielens)]
    subprocess.run(load, check=True)

    from service.app.container import build_services
    from service.core.config import Settings

    services = build_services(Settings())
    store = services.store
    users = sorted(store.events.user_ids())
    if args.movielens:
        random.Random(31).shuffle(users)
    users = users[: args.users]
    titled = defaultdict(list)  # title -> item ids
    for chunk in store.items.chunks():
        for item in chunk:
            titled[item.title].append(item.item_id)
    chosen_by = defaultdict(set)  # item -> users who chose it
    judged: Counter[str] = Counter()
    for user in store.events.user_ids():
        for event in store.events.of_user(user):
            chosen_by[event.item_id].add(user)
    for user in users:
        profile, history = services.profiler.current_with_history(user)
        picked = services.recommender.recommend(profile, args.k, history)
        items = store.items.get([r.item_id for r in picked] + _evidence(profile))
        for rec in picked:
            judged[_judge(rec, profile, items, titled, chosen_by, user)] += 1
    services.close()
    _print(judged, len(users), args)
    return 0


def _evidence(profile) -> list[str]:  # type: ignore[no-untyped-def]
    return [i for interest in profile.interests for i in interest.evidence]


def _judge(rec, profile, items, titled, chosen_by, user) -> str:  # type: ignore[no-untyped-def]
    interest = INTEREST.search(rec.reason)
    if interest:
        label = interest.group(1)
        evidence = next((i.evidence for i in profile.interests if i.label == label), ())
        kinds = {c for e in evidence if e in items for c in items[e].categories}
        mine = set(items[rec.item_id].categories) if rec.item_id in items else set()
        return "interest: true" if kinds & mine else "interest: false"
    people = PEOPLE.match(rec.reason)
    if people:
        anchors = titled.get(people.group(1)) or [people.group(1)]
        both = any((chosen_by[a] & chosen_by[rec.item_id]) - {user} for a in anchors)
        return "people who chose: true" if both else "people who chose: not seen together"
    return f"other: {rec.reason.split(';')[0][:50]}"


def _print(judged: Counter[str], users: int, args: argparse.Namespace) -> None:
    source = args.movielens or "demo"
    total = sum(judged.values())
    print(f"\n{source}: {users} users, {total} recommendations (k={args.k})")
    for kind, n in sorted(judged.items()):
        print(f"  {kind}: {n} ({n / total:.1%})")
    for family in ("interest", "people who chose"):
        true = judged[f"{family}: true"]
        said = sum(n for kind, n in judged.items() if kind.startswith(family + ":"))
        if said:
            print(f"  '{family}' reasons that hold: {true}/{said} = {true / said:.1%}")


if __name__ == "__main__":
    sys.exit(main())
