"""ws/live/: who may open it, what each member of the cast receives, and the hub's ticks.

The hub is made with `autorun=False` and a fixed clock: each test ticks it itself, so a
push is the answer to one tick and no test waits for time to pass. Sockets are driven with
asgiref's ApplicationCommunicator (channels.testing needs daphne, which is not installed).
"""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connections
from django.test import Client

from apps.core.changes import announce
from apps.live import hub as hub_module
from smartswitch.asgi import application
from tests.live.conftest import alert, reserve

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime.now(UTC).replace(microsecond=0)


class Socket:
    """One websocket client of the application: connect, read the next JSON message, close."""

    def __init__(self, *, cookie: str | None = None, key: str | None = None, origin: bool = True):
        headers = [(b"host", b"localhost")]
        if origin:
            headers.append((b"origin", b"http://localhost"))
        if cookie:
            headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
        if key is not None:
            headers.append((b"authorization", f"Bearer {key}".encode()))
        scope = {
            "type": "websocket",
            "path": "/ws/live/",
            "query_string": b"",
            "headers": headers,
            "subprotocols": [],
        }
        self.app = ApplicationCommunicator(application, scope)

    async def connect(self) -> bool:
        """Open the socket; once accepted, wait until the hub has it (it joins after accepting)."""
        hub = hub_module.HUB
        before = members(hub)
        await self.app.send_input({"type": "websocket.connect"})
        answer = await self.app.receive_output(timeout=5)
        if answer["type"] != "websocket.accept":
            return False
        async with asyncio.timeout(5):
            while hub is not None and members(hub) == before:
                await asyncio.sleep(0.01)
        return True

    async def receive(self) -> dict:
        message = await self.app.receive_output(timeout=5)
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def nothing(self) -> bool:
        return await self.app.receive_nothing(timeout=0.1)

    async def close(self) -> None:
        await self.app.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.app.wait(timeout=5)


def members(hub) -> int:
    return sum(len(sockets) for sockets in hub.sockets.values()) if hub is not None else 0


def session_of(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.fixture(autouse=True)
def close_socket_connections(transactional_db):
    """Close what the consumers opened in asgiref's worker thread, while the database may be used.

    That thread outlives the test: a connection left in it would be checked by the next
    module's socket (as it authenticates) outside any database test, and refused.
    """
    yield
    asyncio.run(sync_to_async(forget_connections)())


def forget_connections() -> None:
    for connection in connections.all(initialized_only=True):
        connection.close()
        if connection.connection is not None:  # an in-memory SQLite test database ignores close()
            del connections[connection.alias]


@pytest.fixture
def hub(monkeypatch):
    """This process's hub for the test: ticked by hand, at NOW."""
    made = hub_module.Hub(clock=lambda: NOW, autorun=False)
    monkeypatch.setattr(hub_module, "HUB", made)
    return made


@pytest.fixture
def traffic(cast):
    calls = {
        "a": reserve(
            cast.a.customer,
            node=cast.node,
            caller="111A",
            callee="4915100000001",
            at=NOW - timedelta(seconds=5),
        ),
        "b": reserve(
            cast.b.customer,
            node=cast.node,
            caller="221B",
            callee="4479000000009",
            at=NOW - timedelta(seconds=5),
        ),
        "op": reserve(
            cast.operator_customer,
            node=cast.node,
            caller="331O",
            callee="3312345678",
            at=NOW - timedelta(seconds=5),
        ),
    }
    alert(peer=cast.a.customer, subject="Burst of Customer A", at=NOW - timedelta(minutes=1))
    alert(peer=cast.b.customer, subject="Burst of Customer B", at=NOW - timedelta(minutes=1))
    return calls


MATRIX = {
    # who: (concurrent calls, alerts, strings that must not appear)
    "operator": (3, 2, []),
    "reseller_a": (1, 1, ["221B", "4479000000009", "331O", "Customer B"]),
    "reseller_b": (1, 1, ["111A", "4915100000001", "331O", "Customer A"]),
    "customer_a": (1, 1, ["221B", "4479000000009", "331O", "Customer B"]),
    "customer_b": (1, 1, ["111A", "4915100000001", "331O", "Customer A"]),
}


def users(cast):
    return {
        "operator": cast.operator,
        "reseller_a": cast.a.staff,
        "reseller_b": cast.b.staff,
        "customer_a": cast.a.customer_user,
        "customer_b": cast.b.customer_user,
    }


def test_every_member_of_the_cast_receives_its_own_figures_only(cast, traffic, hub):
    cookies = {who: session_of(user) for who, user in users(cast).items()}

    async def run():
        sockets = {who: Socket(cookie=cookie) for who, cookie in cookies.items()}
        for socket in sockets.values():
            assert await socket.connect()
        await hub.tick()
        received = {who: await socket.receive() for who, socket in sockets.items()}
        for socket in sockets.values():
            await socket.close()
        return received

    received = asyncio.run(run())
    for who, (concurrent, alerts, absent) in MATRIX.items():
        message = received[who]
        assert message["type"] == "figures"
        figures = message["figures"]
        assert figures["concurrent"] == concurrent, who
        assert figures["alerts"]["count"] == alerts, who
        text = json.dumps(message)
        for value in absent:
            assert value not in text, (who, value)
        for reservation in traffic.values():
            assert reservation.call_id not in text
        assert ("calls" in figures) == who.startswith("customer")
    # Five audiences for five sockets; after the last one left, the hub holds nobody.
    assert hub.sockets == {}


@pytest.mark.parametrize(
    "key, concurrent, callers",
    [
        ("operator_key", 3, None),
        ("a.staff_key", 1, None),
        ("b.customer_key", 1, ["221B"]),
    ],
)
def test_an_api_key_opens_the_socket_with_its_scope_without_an_origin(
    cast, traffic, hub, key, concurrent, callers
):
    token = cast
    for part in key.split("."):
        token = getattr(token, part)

    async def run():
        socket = Socket(key=token, origin=False)
        assert await socket.connect()
        await hub.tick()
        message = await socket.receive()
        await socket.close()
        return message

    message = asyncio.run(run())
    assert message["figures"]["concurrent"] == concurrent
    if callers is None:
        assert "calls" not in message["figures"]
    else:
        assert [call["caller"] for call in message["figures"]["calls"]] == callers


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # anonymous
        {"key": "ssk_not-a-key"},
        {"key": ""},
        {"origin": False},  # a session without an Origin header
    ],
    ids=["anonymous", "unknown-key", "empty-key", "no-origin"],
)
def test_a_socket_without_a_tenant_is_refused_before_the_handshake(cast, hub, kwargs):
    if kwargs.get("origin") is False:
        kwargs["cookie"] = session_of(cast.a.customer_user)

    async def run():
        socket = Socket(**kwargs)
        accepted = await socket.connect()
        await socket.app.send_input({"type": "websocket.disconnect", "code": 1006})
        await socket.app.wait(timeout=5)
        return accepted

    assert asyncio.run(run()) is False
    assert hub.sockets == {}


def test_a_login_that_stands_for_nobody_is_refused(cast, hub):
    from django.contrib.auth import get_user_model

    loner = get_user_model().objects.create_user("loner", password="x", is_staff=True)
    cookie = session_of(loner)

    async def run():
        socket = Socket(cookie=cookie)
        accepted = await socket.connect()
        await socket.app.send_input({"type": "websocket.disconnect", "code": 1006})
        await socket.app.wait(timeout=5)
        return accepted

    assert asyncio.run(run()) is False


def test_a_new_reservation_is_in_the_next_push_and_nothing_is_sent_when_nothing_changed(cast, hub):
    cookie = session_of(cast.a.customer_user)

    async def run():
        socket = Socket(cookie=cookie)
        assert await socket.connect()
        await hub.tick()
        first = await socket.receive()
        await hub.tick()
        quiet = await socket.nothing()
        await database_sync_to_async(reserve)(
            cast.a.customer,
            node=cast.node,
            caller="5550001",
            callee="4915199999999",
            at=NOW - timedelta(seconds=1),
        )
        # B's new call is not A's business: it changes nothing A is sent.
        await database_sync_to_async(reserve)(cast.b.customer, node=cast.node, at=NOW - timedelta(seconds=1))
        await hub.tick()
        second = await socket.receive()
        await socket.close()
        return first, quiet, second

    first, quiet, second = asyncio.run(run())
    assert first["figures"]["concurrent"] == 0
    assert quiet
    assert second["figures"]["concurrent"] == 1
    assert second["figures"]["cps"] == "0.1"
    assert second["figures"]["calls"][0]["callee"] == "4915199999999"
    assert second["figures"]["nodes"] == [{"name": cast.node.name, "calls": 1}]


def test_one_read_per_tick_whatever_the_number_of_sockets(cast, hub, django_assert_max_num_queries):
    cookies = [session_of(cast.a.customer_user) for _ in range(3)] + [
        session_of(cast.a.staff) for _ in range(3)
    ]
    reads = []
    original = hub.read

    def counting_read(now):
        reads.append(now)
        return original(now)

    hub.read = counting_read

    async def run():
        sockets = [Socket(cookie=cookie) for cookie in cookies]
        for socket in sockets:
            assert await socket.connect()
        await hub.tick()
        messages = [await socket.receive() for socket in sockets]
        for socket in sockets:
            await socket.close()
        return messages

    messages = asyncio.run(run())
    assert len(reads) == 1
    assert len(hub.audiences) == 0
    assert len(messages) == 6


def test_a_change_event_reaches_the_hub_and_an_alert_is_pushed_at_once(cast, monkeypatch):
    """Through the real loop: the alert's change event wakes the hub long before its next tick."""
    made = hub_module.Hub(clock=lambda: NOW, tick_seconds=60)
    monkeypatch.setattr(hub_module, "HUB", made)
    cookie = session_of(cast.a.staff)

    def raise_alert():
        row = alert(peer=cast.a.customer, subject="New burst", at=NOW - timedelta(seconds=1))
        announce("fraud.Alert", [row.pk])

    async def run():
        socket = Socket(cookie=cookie)
        assert await socket.connect()
        first = await socket.receive()  # the loop's first tick
        while not made.listening:  # the listener has joined the change-event group
            await asyncio.sleep(0.01)
        await database_sync_to_async(raise_alert)()
        second = await socket.receive()
        await socket.close()
        return first, second

    first, second = asyncio.run(run())
    assert first["figures"]["alerts"]["count"] == 0
    assert second["figures"]["alerts"]["count"] == 1
    assert second["figures"]["alerts"]["latest"][0]["subject"] == "New burst"
    assert made.task is None


def test_a_database_error_is_logged_the_sockets_hear_stale_and_the_hub_goes_on(cast, hub, caplog):
    cookie = session_of(cast.a.customer_user)
    failing = {"on": True}
    original = hub.read

    def read(now):
        if failing["on"]:
            raise RuntimeError("database went away")
        return original(now)

    hub.read = read

    async def run():
        socket = Socket(cookie=cookie)
        assert await socket.connect()
        await hub.tick()
        stale = await socket.receive()
        failing["on"] = False
        await hub.tick()
        back = await socket.receive()
        await socket.close()
        return stale, back

    stale, back = asyncio.run(run())
    assert stale == {"type": "stale", "since": NOW.isoformat()}
    assert back["type"] == "figures"
    assert hub.stale_since is None
    assert "reading the database failed" in caplog.text


def test_a_peer_change_refreshes_who_each_audience_may_see(cast, hub):
    """A customer added to reseller A after its staff opened the page shows in A's figures."""
    from tests.factories import make_peer

    cookie = session_of(cast.a.staff)

    def new_customer_calls():
        newcomer = make_peer("Newcomer of A", reseller=cast.a.reseller)
        reserve(newcomer, node=cast.node, at=NOW - timedelta(seconds=1))

    async def run():
        socket = Socket(cookie=cookie)
        assert await socket.connect()
        await hub.tick()
        first = await socket.receive()
        await database_sync_to_async(new_customer_calls)()
        await hub.tick()
        unseen = await socket.nothing()  # not yet: A's audience is the customers it had
        hub.changed("peers.Peer")
        await hub.tick()
        second = await socket.receive()
        await socket.close()
        return first, unseen, second

    first, unseen, second = asyncio.run(run())
    assert first["figures"]["concurrent"] == 0
    assert unseen
    assert second["figures"]["concurrent"] == 1


def test_a_reseller_switched_off_sees_nothing_from_the_next_refresh(cast, traffic, hub):
    from apps.tenancy.models import Reseller

    cookie = session_of(cast.a.staff)

    async def run():
        socket = Socket(cookie=cookie)
        assert await socket.connect()
        await hub.tick()
        first = await socket.receive()
        await database_sync_to_async(Reseller.objects.filter(pk=cast.a.reseller.pk).update)(is_active=False)
        hub.changed("tenancy.Reseller")
        await hub.tick()
        second = await socket.receive()
        await socket.close()
        return first, second

    first, second = asyncio.run(run())
    assert first["figures"]["concurrent"] == 1
    assert second["figures"]["concurrent"] == 0 and second["figures"]["alerts"]["count"] == 0


def test_a_socket_joining_an_audience_gets_its_figures_at_once(cast, traffic, hub):
    """The figures are pushed on a change only: a second browser of the same scope is not left waiting."""
    cookies = [session_of(cast.a.customer_user), session_of(cast.a.customer_user)]

    async def run():
        first = Socket(cookie=cookies[0])
        assert await first.connect()
        await hub.tick()
        one = await first.receive()
        second = Socket(cookie=cookies[1])
        assert await second.connect()
        two = await second.receive()  # no tick: the audience's last figures
        await hub.tick()
        quiet = await first.nothing() and await second.nothing()
        for socket in (first, second):
            await socket.close()
        return one, two, quiet

    one, two, quiet = asyncio.run(run())
    assert one == two and one["figures"]["calls"][0]["caller"] == "111A"
    assert quiet


def test_a_customer_joining_during_a_read_waits_for_the_tick_that_read_its_calls(cast, traffic, hub):
    cookie = session_of(cast.a.customer_user)
    original = hub.read

    def read_begun_before_the_join(now):
        original(now)
        hub.snapshot.watched, hub.snapshot.calls = frozenset(), []

    async def run():
        socket = Socket(cookie=cookie)
        assert await socket.connect()
        hub.read = read_begun_before_the_join
        await hub.tick()
        quiet = await socket.nothing()  # not "no calls in progress": nothing, until they were read
        hub.read = original
        await hub.tick()
        message = await socket.receive()
        await socket.close()
        return quiet, message

    quiet, message = asyncio.run(run())
    assert quiet
    assert [call["caller"] for call in message["figures"]["calls"]] == ["111A"]
