"""Exercise a running service the way a new client would, and check what comes back.

Usage:
    python scripts/ops/smoke_client.py [--url URL] [--api-key KEY]

The URL defaults to http://127.0.0.1:$PORT (PORT as for `make run`, 8000 when unset).

It puts 120 items in two unrelated topics (astronomy, baking), posts 60 events one day apart
for a new user (30 astronomy, then 30 baking) and 60 astronomy events for a steady user, then
reads profiles, history, drift and recommendations, retries a batch, sends bad input and
deletes both users. Prints one line per check; exits 1 if any fails. The test suite runs the
same scenario in-process (tests/e2e/test_scenario.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

DAY = 86_400
TOPICS = {
    "astronomy": {
        "category": "Astronomy",
        "subjects": [
            "Mars rover geology",
            "black hole imaging",
            "exoplanet atmospheres",
            "the Andromeda galaxy",
            "solar flares",
            "Jupiter's moons",
            "neutron star collisions",
            "comet tails",
            "the cosmic microwave background",
            "lunar craters",
        ],
        "words": "telescopes, planets, stars and the night sky",
    },
    "baking": {
        "category": "Baking",
        "subjects": [
            "sourdough starters",
            "croissant lamination",
            "lemon tarts",
            "rye bread crust",
            "chocolate souffle",
            "cinnamon rolls",
            "shortcrust pie pastry",
            "brioche dough",
            "French macarons",
            "banana bread",
        ],
        "words": "flour, butter, ovens and recipes",
    },
}
FORMATS = [
    "documentary",
    "beginner's guide",
    "podcast episode",
    "masterclass",
    "field notes",
    "book",
]


@dataclass
class Report:
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: Any = "") -> bool:
        self.results.append((name, bool(ok), str(detail)))
        return bool(ok)

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.results)


def catalog() -> list[dict[str, Any]]:
    items = []
    for topic, spec in TOPICS.items():
        for number in range(60):
            subject = spec["subjects"][number % 10]
            form = FORMATS[number // 10]
            items.append(
                {
                    "item_id": f"{topic}-{number:02d}",
                    "title": f"{subject[0].upper()}{subject[1:]}: a {form}",
                    "text": f"A {form} about {subject}, for people who love {spec['words']}.",
                    "categories": [spec["category"]],
                }
            )
    return items


def events(user: str, item_ids: list[str], start: float) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{user}-{n}",
            "user_id": user,
            "item_id": item,
            "type": "view",
            "ts": start + n * DAY,
        }
        for n, item in enumerate(item_ids)
    ]


def run_scenario(client: httpx.Client, k: int = 10) -> Report:
    report = Report()
    run = uuid.uuid4().hex[:6]  # fresh users on every run against a long-lived server
    shifter, steady = f"shifter-{run}", f"steady-{run}"
    start = time.time() - 70 * DAY
    astronomy = [f"astronomy-{n:02d}" for n in range(60)]
    baking = [f"baking-{n:02d}" for n in range(60)]

    put = client.put("/v1/items", json={"items": catalog()})
    report.check(
        "items upserted", put.status_code == 200 and put.json()["upserted"] == 120, put.text
    )
    rebuilt = client.post("/v1/index/rebuild")
    report.check("index rebuilt", rebuilt.status_code == 200, rebuilt.text[:200])

    shifter_batch = {"events": events(shifter, astronomy[:30] + baking[:30], start)}
    first = client.post("/v1/events", json=shifter_batch).json()
    report.check("60 events accepted", first.get("accepted") == 60, first)
    again = client.post("/v1/events", json=shifter_batch).json()
    report.check(
        "same batch again: all duplicates",
        again.get("duplicates") == 60 and again.get("accepted") == 0,
        again,
    )
    client.post("/v1/events", json={"events": events(steady, astronomy[:60], start)})

    profile = client.get(f"/v1/users/{shifter}/profile").json()
    labels = [i["label"] for i in profile.get("interests", [])]
    report.check("profile names the second topic first", labels[:1] == ["Baking"], labels)
    history = client.get(f"/v1/users/{shifter}/profiles").json().get("profiles", [])
    report.check("history has at least two profiles", len(history) >= 2, len(history))

    drift = client.get(f"/v1/users/{shifter}/drift").json()
    report.check(
        "drift detected for the shifting user",
        drift.get("drift_detected") is True,
        f"score {drift.get('score')} threshold {drift.get('threshold')} "
        f"gained {drift.get('gained')} lost {drift.get('lost')}",
    )
    steady_drift = client.get(f"/v1/users/{steady}/drift").json()
    report.check(
        "no drift for the steady user",
        steady_drift.get("drift_detected") is False,
        f"score {steady_drift.get('score')} threshold {steady_drift.get('threshold')}",
    )

    recs = (
        client.get(f"/v1/users/{shifter}/recommendations", params={"k": k}).json().get("items", [])
    )
    seen = set(astronomy[:30] + baking[:30])
    picked = [r["item_id"] for r in recs]
    report.check(f"exactly {k} recommendations", len(recs) == k, len(recs))
    report.check("none already seen", not set(picked) & seen, sorted(set(picked) & seen))
    from_second = sum(item.startswith("baking") for item in picked)
    report.check("most from the second topic", from_second > k // 2, f"{from_second}/{k}")
    report.check("each with a reason", all(r.get("reason") for r in recs), recs[:2])

    for name, call in _bad_requests(shifter).items():
        response = call(client)
        body = (
            response.json()
            if response.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        report.check(
            f"bad input ({name}): 4xx envelope",
            400 <= response.status_code < 500 and "error" in body,
            f"{response.status_code} {body.get('error', {}).get('message', '')}",
        )

    for user in (shifter, steady):
        client.delete(f"/v1/users/{user}")
    gone = client.get(f"/v1/users/{shifter}/profile")
    report.check("after DELETE: 404", gone.status_code == 404, gone.status_code)
    return report


def _bad_requests(user: str) -> dict[str, Callable[[httpx.Client], httpx.Response]]:
    return {
        "malformed JSON": lambda c: c.post(
            "/v1/events", content=b"{oops", headers={"content-type": "application/json"}
        ),
        "wrong type": lambda c: c.post(
            "/v1/events", json={"events": [{"user_id": 1, "item_id": "x", "type": "view", "ts": 0}]}
        ),
        "missing field": lambda c: c.put("/v1/items", json={"items": [{"item_id": "x"}]}),
        "unknown user": lambda c: c.get("/v1/users/nobody-at-all/profile"),
        "k out of range": lambda c: c.get(f"/v1/users/{user}/recommendations", params={"k": 0}),
        "oversized batch": lambda c: c.post(
            "/v1/events", json={"events": events("big", ["x"] * 5_001, 0)}
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a running interest-profiler service.")
    port = os.environ.get("PORT", "8000")
    parser.add_argument("--url", default=f"http://127.0.0.1:{port}", help="the service's address")
    parser.add_argument("--api-key")
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    try:
        with httpx.Client(base_url=args.url, headers=headers, timeout=120) as client:
            report = run_scenario(client)
    except httpx.TransportError as error:
        print(f"cannot reach the service at {args.url} ({error}); is it running? pass --url")
        return 2
    for name, ok, detail in report.results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    failed = sum(not ok for _, ok, _ in report.results)
    print(f"{len(report.results) - failed} passed, {failed} failed")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
