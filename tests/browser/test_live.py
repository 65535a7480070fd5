"""The live pages in a real browser: the operator's admin home and live dashboard, and a
customer's Live calls showing a new call within 2 s of its reservation.

pytest-django's live_server is WSGI and serves no websockets, and channels' live server
needs daphne (not installed): the application runs here under uvicorn, in a thread of this
process, so that it reads the test database the test writes to. Static files are served by
Django's ASGIStaticFilesHandler, as the live server does.
"""

import asyncio
import re
import threading
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.db import connections
from django.utils import timezone
from playwright.sync_api import expect

from apps.live import hub as hub_module
from tests.browser.conftest import new_tab, screenshot_taker
from tests.conftest import PASSWORD
from tests.live.conftest import alert, reserve
from tests.ports import free_port

pytestmark = pytest.mark.browser


class AsgiServer(threading.Thread):
    """uvicorn serving smartswitch.asgi on a free loopback port until `stop`."""

    def __init__(self) -> None:
        import uvicorn

        from smartswitch.asgi import application

        super().__init__(name="asgi-live-server", daemon=True)
        self.port = free_port()
        config = uvicorn.Config(
            ASGIStaticFilesHandler(application),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self) -> None:
        self.server.run()
        # The consumers' and hub's connections live in asgiref's worker thread, which outlives
        # this server; an in-memory SQLite test database ignores close(), so they are dropped.
        asyncio.run(sync_to_async(forget_connections)())

    def start_serving(self) -> "AsgiServer":
        self.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.is_alive() or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.join(timeout=10)


def forget_connections() -> None:
    for connection in connections.all(initialized_only=True):
        connection.close()
        if connection.connection is not None:
            del connections[connection.alias]


@pytest.fixture
def asgi_server(transactional_db, monkeypatch):
    monkeypatch.setattr(hub_module, "HUB", None)  # this server's own hub, made in its loop
    server = AsgiServer().start_serving()
    yield server
    server.stop()


@pytest.fixture
def tab(browser, asgi_server):
    with new_tab(browser, asgi_server.url) as page:
        yield page


@pytest.fixture
def shoot(tab, tmp_path):
    return screenshot_taker(tab, tmp_path)


def sign_in(tab, login_url: str, username: str, next_url: str) -> None:
    tab.goto(f"{login_url}?next={next_url}")
    tab.locator("#id_username").fill(username)
    tab.locator("#id_password").fill(PASSWORD)
    tab.locator("form [type=submit]").click()
    expect(tab).to_have_url(re.compile(re.escape(next_url) + "$"))


def test_operator_dashboard_and_a_customers_new_call_within_two_seconds(tab, shoot, cast):
    now = timezone.now()
    reserve(
        cast.a.customer,
        node=cast.node,
        caller="111A",
        callee="4915100000001",
        answered=True,
        at=now - timedelta(seconds=30),
    )
    reserve(
        cast.b.customer, node=cast.node, caller="221B", callee="4479000000009", at=now - timedelta(seconds=5)
    )
    alert(peer=cast.b.customer, subject="Burst of Customer B")

    # The operator: the admin home is the dashboard, then the live page; both connect.
    sign_in(tab, "/admin/login/", "operator", "/admin/")
    expect(tab.locator("#dashboard")).to_be_visible()
    expect(tab.locator('#dashboard [data-live="concurrent"]')).to_have_text("2")
    expect(tab.locator("#fraud-alerts")).to_contain_text("Burst of Customer B")
    expect(tab.locator("#dashboard-links")).to_contain_text("Check routing")
    expect(tab.locator(".app-peers")).to_be_visible()  # Django's app list is still below
    expect(tab.locator("#dashboard #live")).to_have_attribute("data-connected", "1")
    shoot("live-admin-home")
    tab.goto("/admin/live/")
    expect(tab.locator('[data-live="concurrent"]')).to_have_text("2")
    expect(tab.locator("#live .live-nodes")).to_contain_text(cast.node.name)
    assert tab.evaluate("() => Boolean(window.Chart && window.Chart.getChart('live-cps-chart'))")
    shoot("live-admin-dashboard")
    tab.context.clear_cookies()

    # Customer A: its Live calls, then a call reserved as call control would.
    sign_in(tab, "/portal/login/", "customer_a", "/portal/live/")
    calls = tab.locator("#live-calls tbody tr.live-call")
    expect(calls).to_have_count(1)
    expect(tab.locator("#live-calls")).to_contain_text("111A")
    expect(tab.locator("body")).not_to_contain_text("221B")
    expect(tab.locator("body")).not_to_contain_text("Burst of Customer B")
    # The socket is open: the call below reaches the page by a push, not by a render.
    expect(tab.locator("#live")).to_have_attribute("data-connected", "1")
    shoot("live-portal-calls")

    reserve(
        cast.a.customer, node=cast.node, caller="5550001", callee="4930123456", destination="Germany Berlin"
    )
    expect(calls).to_have_count(2, timeout=2000)
    expect(tab.locator("#live-calls")).to_contain_text("4930123456", timeout=2000)
    expect(tab.locator('[data-live="concurrent"]')).to_have_text("2", timeout=2000)
    shoot("live-portal-new-call")
