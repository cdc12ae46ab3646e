"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis).

Usage:
    python scripts/ops/fuzz_api.py [--examples 200] [--out FILE.json]
    python scripts/ops/fuzz_api.py --store postgresql     # the app over a throwaway PostgreSQL
    python scripts/ops/fuzz_api.py --url http://staging:8000 --api-key KEY   # a deployment

Every operation gets up to ``--examples`` schema-valid and as many schema-violating requests, sent
in-process to an app with API keys on, a small catalog, an index and a user. Each response must
not be a 5xx and must conform to the documented status codes, content type, headers and body
schema. Prints the cases run and the failures per operation; exits 1 on any failure.

With ``--url`` the requests go over HTTP to a running deployment instead, from the OpenAPI
document it serves; nothing is set up there first. The fuzzer writes what it generates
(items, events, deletions of made-up users) into that deployment's store: point it at a
staging instance, not at production.
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

import httpx
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
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.schemas import BaseSchema

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
        seed(client)
        yield app


def seed(client: TestClient | httpx.Client) -> None:
    """A catalog of 20 items, its index and one user with 8 events, through the API."""
    items = [{"item_id": str(n), "title": f"Item {n}", "categories": ["c"]} for n in range(20)]
    for answer in (
        client.put("/v1/items", json={"items": items}),
        client.post("/v1/index/rebuild"),
        client.post(
            "/v1/events",
            json={
                "events": [
                    {"user_id": "0", "item_id": str(n), "type": "view", "ts": n} for n in range(8)
                ]
            },
        ),
    ):
        answer.raise_for_status()


def fuzz(schema: BaseSchema, examples: int, key: str | None = KEY) -> FuzzReport:
    """Every operation of ``schema`` (an app in process, or a deployment's document, which
    carries its base URL), schema-valid and schema-violating cases."""
    report = FuzzReport()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for number, result in enumerate(schema.get_all_operations()):
        if isinstance(result, Err):  # the document itself is wrong there: a failure to report
            report.failures[f"operation {number} of the document"] = str(result.err())[:2000]
            continue
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.method.upper()} {operation.path} ({mode.value})"
            try:
                _fuzz_operation(operation.as_strategy(mode), label, examples, headers, report)
            except Unsatisfiable:
                continue  # nothing to violate: the route takes no input (/health, /ready)
            # Schemathesis' FailureGroup is a BaseException: caught by name, not as Exception.
            except (Exception, FailureGroup) as failure:  # reported per operation, not swallowed
                report.failures[label] = str(failure)[:2000]
    return report


def _fuzz_operation(
    cases: SearchStrategy[schemathesis.Case],
    label: str,
    examples: int,
    headers: dict[str, str],
    report: FuzzReport,
) -> None:
    @given(case=cases)
    @hypothesis_settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def run(case: schemathesis.Case) -> None:
        report.cases[label] += 1
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


def app_schema(app: FastAPI) -> BaseSchema:
    """The OpenAPI document of an app in this process; cases are sent to it in process."""
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def deployment_schema(url: str, key: str | None) -> BaseSchema:
    """The OpenAPI document the deployment at ``url`` serves; its address is the base URL."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        return schemathesis.openapi.from_url(f"{url.rstrip('/')}/openapi.json", headers=headers)
    except Exception as error:  # a wrong address or a non-API answer: one line, not a traceback
        raise SystemExit(f"cannot read {url}/openapi.json: {str(error).splitlines()[0]}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz the API from its OpenAPI document.")
    parser.add_argument("--examples", type=int, default=200, help="per operation")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--store", type=store_option, default="sqlite", help=STORE_HELP)
    parser.add_argument("--url", help="a running deployment's address, e.g. http://host:8000")
    parser.add_argument("--api-key", help="its API key, where it asks for one")
    args = parser.parse_args(argv)
    if args.url:
        report = fuzz(deployment_schema(args.url, args.api_key), args.examples, args.api_key)
    else:
        with (
            tempfile.TemporaryDirectory(prefix="iprof-fuzz-") as folder,
            store_url(args.store) as url,
            fuzz_target(Path(folder), url) as app,
        ):
            report = fuzz(app_schema(app), args.examples)
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
