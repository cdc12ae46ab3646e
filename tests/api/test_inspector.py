"""The inspector: its JSON routes in-process, and the page itself in headless Chromium against a
live server on loopback with the demo data and the real MiniLM."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient

from service.app.container import build_services
from service.app.factory import create_app
from service.core.config import Settings
from service.ingest.demo import demo_catalog
from service.ingest.demo_events import demo_events
from tests.api.test_api import _error, _events, _items_body

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def test_inspection_of_one_user_has_everything_the_page_needs(client):
    from tests.conftest import topic_items

    client.put("/v1/items", json=_items_body(topic_items()))
    client.post("/v1/index/rebuild")
    client.post("/v1/events", json={"events": _events("u", [f"baking-{n:02d}" for n in range(6)])})
    data = client.get("/v1/inspector/users/u").json()
    assert data["profile"]["interests"][0]["label"] == "Baking"
    assert len(data["history"]) == 1 and len(data["recommendations"]) == 10
    cited = {i for interest in data["profile"]["interests"] for i in interest["evidence"]}
    shown = cited | {r["item_id"] for r in data["recommendations"]}
    assert shown <= set(data["items"])  # every id on the page has its title
    titles = {item.item_id: item.title for item in topic_items()}
    assert all(data["items"][i]["title"] == titles[i] for i in shown)
    _error(client.get("/v1/inspector/users/nobody"), 404, "unknown_user")


def test_overview_lists_recent_drift_and_fallbacks(client):
    from tests.conftest import topic_items

    client.put("/v1/items", json=_items_body(topic_items()))
    astronomy = [f"astronomy-{n:02d}" for n in range(10)]
    baking = [f"baking-{n:02d}" for n in range(10)]
    client.post("/v1/events", json={"events": _events("shifter", astronomy + baking)})
    client.get("/v1/users/shifter/profiles")
    overview = client.get("/v1/inspector/overview").json()
    assert overview["users"] == 1
    (entry,) = overview["recent_drift"]
    assert entry["user_id"] == "shifter" and entry["score"] > entry["threshold"]
    assert "Baking" in entry["gained"] and "Astronomy" in entry["lost"]
    assert overview["recent_fallbacks"] == []  # no LLM configured, nothing fell back


def test_the_page_shell_is_served_without_a_key_but_the_data_is_not(settings):
    settings.api_keys = ["k"]
    with TestClient(create_app(settings)) as client:
        page = client.get("/users/anyone")
        assert page.status_code == 200 and "Loading…" in page.text  # a shell, no data in it
        assert "anyone" not in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/static/inspector.js").status_code == 200
        _error(client.get("/v1/inspector/overview"), 401, "unauthorized")


# --- the page in a real browser ----------------------------------------------------------


class LiveServer:
    def __init__(self, app) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def demo_settings(tmp_path_factory, minilm) -> Settings:
    root = tmp_path_factory.mktemp("inspector")
    settings = Settings(data_dir=root / "data", index_dir=root / "index")
    services = build_services(settings, embedder=minilm, load_item_index=False)
    services.store.items.upsert(demo_catalog())
    services.store.events.add(demo_events())
    services.index.rebuild(services.store)
    for user in services.store.events.user_ids():
        services.profiler.update(user)
    services.close()
    return settings


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium not found: install Debian's `chromium` package (.ci/run does)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    yield opened
    context.close()


def _drifted_demo_user(settings: Settings, minilm) -> str:
    services = build_services(settings, embedder=minilm, load_item_index=False)
    try:
        return services.store.profiles.recent_drifts(1)[0].user_id
    finally:
        services.close()


@pytest.mark.slow
def test_user_page_shows_profile_timeline_drift_and_recommendations(
    demo_settings, minilm, page, tmp_path
):
    user = _drifted_demo_user(demo_settings, minilm)
    with LiveServer(create_app(demo_settings, embedder=minilm)) as server:
        page.goto(f"{server.url}/users/{user}")
        page.get_by_role("heading", name="Current profile").wait_for()
        assert page.get_by_role("heading", level=1).inner_text() == f"User {user}"
        interests = page.locator("ol.interests > li")
        assert interests.count() >= 1
        assert "Shown by:" in interests.first.inner_text()
        history = page.locator("ol.timeline > li")
        assert history.count() >= 3
        chart = page.get_by_role("img", name="Drift score over windows")
        assert chart.count() == 1
        assert page.locator("svg .detection").count() >= 1
        detections = page.locator("ul.detections > li")
        assert "Gained:" in detections.first.inner_text()
        assert page.locator("ol.recommendations > li").count() == 10
        assert "matches your interest" in page.locator("ol.recommendations").inner_text()
        assert page.locator("dl.provenance").inner_text().startswith("Summarizer")
        shot = tmp_path / "inspector.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        if os.environ.get("INSPECTOR_SCREENSHOT_TO"):  # `make screenshot` refreshes docs/
            shutil.copy(shot, os.environ["INSPECTOR_SCREENSHOT_TO"])


@pytest.mark.slow
def test_overview_links_to_users_and_unknown_users_get_a_message(demo_settings, minilm, page):
    with LiveServer(create_app(demo_settings, embedder=minilm)) as server:
        page.goto(server.url + "/")
        page.get_by_role("heading", name="Recent interest drift").wait_for()
        first_user = page.locator("#recent-drift ~ table a").first
        name = first_user.inner_text()
        first_user.click()
        page.get_by_role("heading", name=f"User {name}").wait_for()
        assert page.get_by_role("button", name="Forget the API key").is_hidden()  # no keys here
        page.get_by_label("User id").fill("nobody-here")
        page.get_by_role("button", name="Open profile").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        assert 'There is no user "nobody-here"' in alert.inner_text()


@pytest.mark.slow
def test_with_api_keys_the_page_asks_and_keeps_the_key_out_of_the_url(demo_settings, minilm, page):
    settings = demo_settings.model_copy(update={"api_keys": ["s3cret-key"]})
    user = _drifted_demo_user(demo_settings, minilm)
    with LiveServer(create_app(settings, embedder=minilm)) as server:
        page.goto(f"{server.url}/users/{user}")
        page.get_by_role("heading", name="API key needed").wait_for()
        page.get_by_label("API key", exact=True).fill("wrong")
        page.get_by_role("button", name="Use key").click()
        page.get_by_text("the API key is not valid").wait_for()
        page.get_by_label("API key", exact=True).fill("s3cret-key")
        page.get_by_role("button", name="Use key").click()
        page.get_by_role("heading", name="Current profile").wait_for()
        assert "s3cret" not in page.url
        assert page.evaluate("sessionStorage.getItem('iprof-api-key')") == "s3cret-key"
        assert page.locator("#key-panel").is_hidden()
        page.get_by_role("button", name="Forget the API key").click()
        page.get_by_role("heading", name="API key needed").wait_for()
        assert page.evaluate("sessionStorage.getItem('iprof-api-key')") is None
        assert page.get_by_role("button", name="Forget the API key").is_hidden()
