"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis).

Usage:
    python scripts/ops/fuzz_api.py [--examples 200] [--out FILE.json]
    python scripts/ops/fuzz_api.py --store postgresql     # the app over a throwaway PostgreSQL

Every operation gets up to ``--examples`` schema-valid and as many schema-violating requests, sent
in-process to an app with API keys on, a small catalog, an index and a user. Each response must
not be a 5xx and must conform to the documented status codes, content type, headers and body
schema. Prints the cases run and the failures per operation; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app.factory import create_app
from service.core.config import Settings
from tests.fixtures.pg_server import STORE_HELP, store_option, store_url

KEY = "fuzz-key"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class FuzzReport:
    cases: Counter[str] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.cases.values())


@contextmanager
def fuzz_target(folder: Path, database_url: str | None = None) -> Iterator[FastAPI]:
    """The app with keys on, no rate limit, a catalog, an index and one user, lifespan running."""
    settings = Settings(
        database_url=database_url,
        data_dir=folder / "data",
        index_dir=folder / "index",
        embed_model="hashing",
        window="5e",
        api_keys=[KEY],
        rate_limit_per_second=0,
    )
    app = create_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as client:
        items = [{"item_id": str(n), "title": f"Item {n}", "categories": ["c"]} for n in range(20)]
        client.put("/v1/items", json={"items": items})
        client.post("/v1/index/rebuild")
        events = [{"user_id": "0", "item_id": str(n), "type": "view", "ts": n} for n in range(8)]
        client.post("/v1/events", json={"events": events})
        yield app


def fuzz(app: FastAPI, examples: int) -> FuzzReport:
    report = FuzzReport()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.method.upper()} {operation.path} ({mode.value})"
            try:
                _fuzz_operation(operation.as_strategy(mode), label, examples, report)
            except Unsatisfiable:
                continue  # nothing to violate: the route takes no input (/health, /ready)
            except Exception as failure:  # recorded per operation and reported, never swallowed
                report.failures[label] = str(failure)[:2000]
    return report


def _fuzz_operation(
    cases: SearchStrategy[schemathesis.Case], label: str, examples: int, report: FuzzReport
) -> None:
    @given(case=cases)
    @hypothesis_settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def run(case: schemathesis.Case) -> None:
        report.cases[label] += 1
        case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS)

    run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz the API from its OpenAPI document.")
    parser.add_argument("--examples", type=int, default=200, help="per operation")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--store", type=store_option, default="sqlite", help=STORE_HELP)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="iprof-fuzz-") as folder,
        store_url(args.store) as url,
        fuzz_target(Path(folder), url) as app,
    ):
        report = fuzz(app, args.examples)
    for label, count in sorted(report.cases.items()):
        print(f"{label:48} {count:6} cases  {'FAIL' if label in report.failures else 'ok'}")
    print(f"{report.total} cases, {len(report.failures)} operation/mode pairs failing")
    for label, failure in report.failures.items():
        print(f"\n--- {label}\n{failure}")
    if args.out:
        summary = {
            "cases": report.total,
            "per_operation": dict(report.cases),
            "failures": report.failures,
        }
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
