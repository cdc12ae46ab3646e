"""The `iprof` command line: serve, load data, build the index, read profiles."""

from __future__ import annotations

import itertools
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from tqdm import tqdm

from service.app.container import Services, build_services
from service.app.schemas import drift_out, profile_out, recommendations_out, titles_of
from service.core.config import Settings
from service.ingest.demo import demo_catalog
from service.ingest.demo_events import demo_events
from service.ingest.files import (
    FileFormatError,
    check_input_file,
    read_events,
    read_items,
)
from service.ingest.movielens import NotMovieLens, movielens_events, movielens_items
from service.profiling.profiler import RefreshReport, UnknownUser
from service.retrieval.index.build import catalog_hash
from service.retrieval.index.folders import IndexUnavailable, Manifest, current_build, read_manifest
from service.store import SchemaMismatch, Store, StoreUnavailable
from service.store.connection import Migrations

app = typer.Typer(
    help="interest-profiler: interest profiles, drift and recommendations.",
    no_args_is_help=True,
    add_completion=False,
)
T = TypeVar("T")
CHUNK = 5_000


class Engine(str, Enum):
    local = "local"
    ray = "ray"


def _services(load_index: bool = True, reading: bool = False) -> Services:
    """The service's parts; a ``reading`` command never migrates an existing schema (it
    refuses to run on one that is not this code's, naming `iprof migrate`)."""
    settings = Settings()
    migrations: Migrations | None = None
    if reading:
        migrations = "create" if settings.migrate == "auto" else "check"
    return build_services(
        settings, load_item_index=load_index, migrations=migrations, lazy_embedder=True
    )


def _print_json(model: object) -> None:
    text = (
        model.model_dump_json(indent=2)
        if hasattr(model, "model_dump_json")
        else json.dumps(model, indent=2)
    )
    typer.echo(text)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _check_input(path: Path) -> None:
    try:
        check_input_file(path)
    except FileFormatError as error:
        raise _fail(str(error)) from None


def _chunks(records: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: IPROF_HOST, loopback")] = None,
    port: Annotated[int | None, typer.Option(help="Default: IPROF_PORT, 8000")] = None,
    workers: int = 1,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (costs ~10% of throughput under load)")
    ] = True,
) -> None:
    """Run the REST API (with --workers N, N processes, each on its own socket)."""
    from service.app.workers import serve as run_server

    settings = Settings()
    if (host or settings.host) not in ("127.0.0.1", "localhost", "::1") and not settings.api_keys:
        typer.secho(
            "warning: listening beyond loopback with no IPROF_API_KEYS set",
            err=True,
            fg=typer.colors.YELLOW,
        )
    # The store opened (and migrated, unless IPROF_MIGRATE=off) once here: a wrong URL,
    # database or password, or a schema that is not this code's, is one line and exit 2 now,
    # not a traceback from every worker's start.
    Store(
        settings.store_target,
        settings.database_pool,
        settings.database_timeout_s,
        settings.migrations,
    ).close()
    run_server(host or settings.host, port or settings.port, workers, access_log)


@app.command()
def migrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be applied; apply nothing")
    ] = False,
) -> None:
    """Bring the database's schema up to this code's (`iprof serve` does it on start too,
    unless IPROF_MIGRATE=off)."""
    settings = Settings()
    store = Store(
        settings.store_target, settings.database_pool, settings.database_timeout_s, "none"
    )
    try:
        pending = store.pending_migrations()
        if not pending:
            typer.echo(f"the schema of {store.describe()} is up to date")
            return
        if dry_run:
            typer.echo(f"{len(pending)} migration(s) would be applied to {store.describe()}:")
            for name in pending:
                typer.echo(f"  {name}")
            return
        applied = store.migrate()
        typer.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none'}")
    finally:
        store.close()


@app.command("ingest-items")
def ingest_items(path: Path) -> None:
    """Upsert catalog items from a CSV or JSONL file."""
    _check_input(path)
    services = _services(load_index=False)
    try:
        total = sum(services.store.items.upsert(chunk) for chunk in _chunks(read_items(path)))
    except FileFormatError as error:
        raise _fail(str(error)) from None
    typer.echo(json.dumps({"upserted": total}))


@app.command("ingest-events")
def ingest_events(path: Path) -> None:
    """Add events from a CSV or JSONL file (repeated event ids count as duplicates)."""
    _check_input(path)
    services = _services(load_index=False)
    totals = {"accepted": 0, "duplicates": 0, "unknown_items": 0}
    try:
        for chunk in _chunks(read_events(path)):
            for key, value in services.store.events.add(chunk).__dict__.items():
                totals[key] += value
    except FileFormatError as error:
        raise _fail(str(error)) from None
    typer.echo(json.dumps(totals))


@app.command()
def demo(
    movielens: Annotated[
        Path | None,
        typer.Option(
            help="Load a MovieLens folder instead (ml-latest-small, ml-100k or RecBole's)"
        ),
    ] = None,
) -> None:
    """Load the bundled demo catalog and events (or MovieLens) and build the index. Idempotent."""
    services = _services(load_index=False)
    try:
        items = movielens_items(movielens) if movielens else demo_catalog()
        events: Iterable = movielens_events(movielens) if movielens else demo_events()
    except (FileFormatError, NotMovieLens) as error:
        raise _fail(str(error)) from None
    upserted = services.store.items.upsert(items)
    accepted = duplicates = 0
    with tqdm(desc="loading events", unit="event", disable=not sys.stderr.isatty()) as bar:
        for chunk in _chunks(events):
            result = services.store.events.add(chunk)
            accepted, duplicates = accepted + result.accepted, duplicates + result.duplicates
            bar.update(len(chunk))
    typer.echo(f"items: {upserted}; events: {accepted} new, {duplicates} already there")
    _build(services, skip_if_current=True)
    _profile_everyone(services)


def _profile_everyone(services: Services) -> None:
    """Profiles (and drift) and recommendation candidates for every user up front, so the
    inspector's overview has data and the first request for a user is fast. Unchanged
    windows are skipped, so reruns are quick."""
    users = services.store.events.user_ids()
    with tqdm(
        total=len(users), desc="profiling users", unit="user", disable=not sys.stderr.isatty()
    ) as bar:
        report = services.refresh_users(users, on_progress=bar.update)
    made = report.windows_generated
    typer.echo(
        f"profiles: {len(users)} users, {made} windows profiled now"
        if made
        else f"profiles: {len(users)} users, all up to date"
    )
    if report.fallbacks:
        fell_back = sum(report.fallbacks.values())
        typer.echo(f"  {fell_back} of them got the extractive profile instead of the LLM's:")
        _echo_fallbacks(report)


@app.command("build-index")
def build_index_command(
    catalog: Annotated[
        Path | None, typer.Option(help="CSV/JSONL catalog to load first; default: stored items")
    ] = None,
) -> None:
    """Build the FAISS item index from the stored catalog and make it current."""
    services = _services(load_index=False)
    if catalog is not None:
        try:
            for chunk in _chunks(read_items(catalog)):
                services.store.items.upsert(chunk)
        except FileFormatError as error:
            raise _fail(str(error)) from None
    _build(services, skip_if_current=False)


def _build(services: Services, skip_if_current: bool) -> Manifest | None:
    if skip_if_current:
        try:
            built = read_manifest(current_build(services.settings.index_dir))
            built_from = (built.source_hash, built.collaborative_events)
        except IndexUnavailable:
            built_from = None
        # Up to date: the same catalog, and a collaborative model fitted on the same events.
        now = (catalog_hash(services.store.items.chunks()), services.store.events.count())
        if built_from == now:
            services.index.load()
            typer.echo("index: up to date")
            return None
    try:
        manifest = services.index.rebuild(services.store, progress=sys.stderr.isatty())
    except IndexUnavailable as error:
        raise _fail(str(error)) from None
    typer.echo(
        f"index: {manifest.count} items, {manifest.factory}, {manifest.embedder} "
        f"(dim {manifest.dimension}) -> {services.settings.index_dir}/builds/{manifest.build_id}"
    )
    return manifest


@app.command()
def refresh(
    users: Annotated[Path | None, typer.Option(help="File with one user id per line")] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every user with events")] = False,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Windows per LLM batch (default IPROF_LLM_BATCH_SIZE)")
    ] = None,
    force: Annotated[bool, typer.Option(help="Regenerate every window, changed or not")] = False,
    engine: Annotated[
        Engine, typer.Option(help="local: this process; ray: an actor pool on Ray")
    ] = Engine.local,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (--engine ray; default: a local Ray)")
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(min=1, help="Ray actors (default: one per GPU, else one per CPU)"),
    ] = None,
) -> None:
    """Regenerate profiles for many users in shared batches; windows whose events did not
    change are skipped unless --force."""
    if (users is None) == (not all_users):
        raise _fail("give exactly one of --users FILE or --all", code=2)
    if engine is Engine.local and (address or actors):
        raise _fail("--address and --actors go with --engine ray", code=2)
    settings = Settings()
    if batch_size is not None:
        settings = settings.model_copy(update={"llm_batch_size": batch_size})
    if users is not None and not users.is_file():
        raise _fail(f"{users}: no such file", code=2)
    if engine is Engine.ray:
        report = _refresh_on_ray(settings, users, force, address, actors)
    else:
        services = build_services(settings)  # with the index: candidate lists are made too
        wanted = _wanted_users(services.store, users)
        with _progress(len(wanted)) as bar:
            report = services.refresh_users(wanted, force=force, on_progress=bar.update)
    typer.echo(
        f"users: {report.users} refreshed, {report.unknown_users} unknown; "
        f"windows generated: {report.windows_generated}; "
        f"fell back: {sum(report.fallbacks.values())}"
    )
    _echo_fallbacks(report)


def _echo_fallbacks(report: RefreshReport) -> None:
    """A line per reason a window fell back, most frequent first (the reason names the setting
    to change where one would help)."""
    for reason, count in report.fallbacks.most_common():
        typer.echo(f"  {count:6}  {reason}")


def _refresh_on_ray(
    settings: Settings, users: Path | None, force: bool, address: str | None, actors: int | None
) -> RefreshReport:
    """The driver opens only the store (to list the users); the actors load the models."""
    from service.app.ray_refresh import RayUnavailable, refresh_on_ray

    store = Store(settings.store_target, settings.database_pool, settings.database_timeout_s)
    try:
        wanted = _wanted_users(store, users)
    finally:
        store.close()
    if address and settings.database_url is None:
        typer.secho(
            "warning: the store is this machine's SQLite file; a cluster's other machines"
            " cannot open it (set IPROF_DATABASE_URL to a PostgreSQL server they reach)",
            err=True,
            fg=typer.colors.YELLOW,
        )
    try:
        with _progress(len(wanted)) as bar:
            return refresh_on_ray(
                settings,
                wanted,
                address=address,
                force=force,
                actors=actors,
                on_progress=bar.update,
            )
    except RayUnavailable as error:
        raise _fail(str(error), code=2) from None


def _wanted_users(store: Store, users: Path | None) -> list[str]:
    if users is None:
        return store.events.user_ids()
    return [line.strip() for line in users.read_text().splitlines() if line.strip()]


def _progress(total: int) -> tqdm:
    return tqdm(total=total, desc="refreshing", unit="user", disable=not sys.stderr.isatty())


@app.command()
def profile(user: str, refresh: bool = False) -> None:
    """Print a user's current profile."""
    services = _services(load_index=False, reading=True)
    _print_json(profile_out(_known(lambda: services.profiler.current(user, refresh=refresh), user)))


@app.command()
def history(user: str, limit: Annotated[int | None, typer.Option(min=1)] = None) -> None:
    """Print a user's profiles, oldest first."""
    services = _services(load_index=False, reading=True)
    profiles = _known(lambda: services.profiler.history(user, limit), user)
    _print_json({"user_id": user, "profiles": [profile_out(p).model_dump() for p in profiles]})


@app.command()
def drift(user: str) -> None:
    """Print whether a user's interests drifted, and what was gained and lost."""
    services = _services(load_index=False, reading=True)
    _print_json(drift_out(_known(lambda: services.profiler.drift(user), user)))


@app.command()
def recommend(
    user: str, k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000)] = 10
) -> None:
    """Print recommendations for a user, with reasons."""
    services = _services(reading=True)
    current = _known(lambda: services.profiler.current(user), user)
    try:
        items = services.recommender.recommend(current, k)
        titles = titles_of(services.store, items)
    except IndexUnavailable as error:
        raise _fail(str(error)) from None
    finally:
        services.close()  # stores the candidate lists it made, for the next request
    _print_json(recommendations_out(user, items, titles))


def _known(fetch, user: str):  # type: ignore[no-untyped-def]
    try:
        return fetch()
    except UnknownUser:
        raise _fail(f"no events for user {user!r}", code=2) from None


def main() -> None:  # pragma: no cover - the console script entry point
    from pydantic import ValidationError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The service's own notes (an index build swapped in, a model converted) are for operators.
    logging.getLogger("service").setLevel(logging.INFO)
    try:
        app()
    except ValidationError as error:  # bad IPROF_* settings
        first = error.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["loc"]:  # one variable's value; else a rule over several, which names them
            message = f"IPROF_{str(first['loc'][0]).upper()}: {message}"
        typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except (StoreUnavailable, SchemaMismatch) as error:  # the database: down, a wrong URL, ...
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        sys.exit(2)
