"""`iprof demo --movielens` on the real ml-latest-small, read from ../shared (skipped without)."""

import json

import pytest
from typer.testing import CliRunner

from service.app.cli import app
from service.ingest.movielens import movielens_events, movielens_items
from tests.conftest import MOVIELENS

pytestmark = pytest.mark.skipif(
    not (MOVIELENS / "ratings.csv").is_file(), reason=f"MovieLens not found at {MOVIELENS}"
)


def test_movielens_files_parse_into_items_and_rating_events():
    items = movielens_items(MOVIELENS)
    assert len(items) == 9_742
    toy_story = next(i for i in items if i.item_id == "1")
    assert toy_story.title.startswith("Toy Story") and "Animation" in toy_story.categories
    first = next(iter(movielens_events(MOVIELENS)))
    assert first.type == "rate" and 0.5 <= first.value <= 5 and first.event_id == "ml-1-1"


@pytest.mark.slow
def test_demo_with_movielens_profiles_bursty_users(monkeypatch):
    monkeypatch.setenv("IPROF_EMBED_MODEL", "hashing")
    runner = CliRunner()
    loaded = runner.invoke(app, ["demo", "--movielens", str(MOVIELENS)])
    assert loaded.exit_code == 0, loaded.output
    assert "items: 9742; events: 100836 new" in loaded.output
    # User 1 rated 232 films, many within minutes: count windows still give a history.
    history = json.loads(runner.invoke(app, ["history", "1"]).output)["profiles"]
    assert len(history) >= 10
    assert all(p["interests"] for p in history)
    recs = json.loads(runner.invoke(app, ["recommend", "1", "-k", "20"]).output)["items"]
    assert len(recs) == 20
