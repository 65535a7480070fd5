"""The fixed cast every test can use: an operator, two resellers with staff, a customer
of each, an operator customer and a supplier, with their logins and API keys.

Tenancy tests take an object of reseller A and check that reseller B's staff, key and
customer cannot reach it.

Also shared by every folder: `login` (a signed-in admin client) and `api` (an API client
with a key); the call-control world (`world`, `one_minute`, built by tests/switching.py);
`unrated_call` (a call the rater charges); and `rows_for_module`, for the many rows a
module's query-count tests read, built once per module.
"""

import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import override_settings
from rest_framework.test import APIClient

from apps.cdr.models import Cdr
from apps.peers.models import Peer
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import ApiKey
from apps.tenancy.scope import Scope
from tests.factories import CdrFactory, NodeFactory, make_peer, make_rate_table, make_reseller
from tests.switching import build_one_minute, build_world

PASSWORD = "S3cure-test-pass!"
# The production hasher is slow by design; tests create many logins.
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Tenant:
    """One reseller with a staff login, a sell table, a customer with a portal login, keys."""

    reseller: object
    staff: object
    staff_key: str
    sell_table: object
    customer: Peer
    customer_user: object
    customer_key: str


@dataclass
class Cast:
    operator: object
    operator_key: str
    a: Tenant
    b: Tenant
    operator_customer: Peer
    supplier: Peer
    node: object


def _tenant(label: str) -> Tenant:
    system = Scope.system()
    reseller = make_reseller(f"Reseller {label}")
    staff = tenancy_services.add_reseller_staff(
        reseller, actor=system, username=f"staff_{label.lower()}", password=PASSWORD
    ).user
    table = make_rate_table(f"Retail {label}", reseller=reseller)
    customer = make_peer(f"Customer {label}", reseller=reseller, sell_rate_table_id=table.pk)
    customer_user = tenancy_services.add_customer_login(
        customer, actor=system, username=f"customer_{label.lower()}", password=PASSWORD
    ).user
    _, staff_key = tenancy_services.create_api_key(
        actor=system, name=f"{label} staff", scope=ApiKey.Scope.RESELLER, reseller=reseller
    )
    _, customer_key = tenancy_services.create_api_key(
        actor=system, name=f"{label} customer", scope=ApiKey.Scope.CUSTOMER, peer=customer
    )
    return Tenant(reseller, staff, staff_key, table, customer, customer_user, customer_key)


@pytest.fixture
def cast(db) -> Cast:
    return build_cast()


def user_of(cast: Cast, who: str):
    """The login of "operator", "a.staff", "b.customer"…"""
    if who == "operator":
        return cast.operator
    tenant, role = who.split(".")
    tenant = getattr(cast, tenant)
    return tenant.staff if role == "staff" else tenant.customer_user


def key_of(cast: Cast, who: str) -> str:
    """The API key of "operator", "a.staff", "b.customer"…"""
    if who == "operator":
        return cast.operator_key
    tenant, role = who.split(".")
    return getattr(getattr(cast, tenant), f"{role}_key")


def build_cast() -> Cast:
    """The cast of this module's docstring, written to the database."""
    system = Scope.system()
    operator = get_user_model().objects.create_superuser("operator", "op@example.com", PASSWORD)
    _, operator_key = tenancy_services.create_api_key(actor=system, name="ops", scope=ApiKey.Scope.OPERATOR)
    buy = make_rate_table("Carrier X buy", purpose="buy")
    supplier = make_peer("Carrier X", role=Peer.Role.SUPPLIER, buy_rate_table_id=buy.pk)
    operator_table = make_rate_table("Wholesale")
    operator_customer = make_peer(
        "Direct Customer",
        sell_rate_table_id=operator_table.pk,
        account_mode="postpaid",
        credit_limit=Decimal("100"),
    )
    return Cast(
        operator=operator,
        operator_key=operator_key,
        a=_tenant("A"),
        b=_tenant("B"),
        operator_customer=operator_customer,
        supplier=supplier,
        node=NodeFactory(name="node1"),
    )


@pytest.fixture
def system() -> Scope:
    return Scope.system()


@pytest.fixture
def unrated_call(db):
    """Make a call that the rater prices at exactly `cost`: unrated_call(customer, "0.25", **cdr).

    Calls are charged in production only by the billing loop's rater
    (apps.billing.services.rating.rate_batch): tests make the call with this, then run the
    rater. The customer's sell list gets a rate of the call's own (the cost as connection
    fee, nothing per minute), so the rater finds the price in its index as it finds any.
    """
    from apps.rates import lookup
    from apps.rates import services as rate_services
    from apps.rates.models import Rate

    numbers = itertools.count(1)

    def make(customer: Peer, cost, *, destination: str = "", **fields):
        customer = Peer.objects.get(pk=customer.pk)
        if customer.sell_rate_table_id is None:
            table = make_rate_table(f"{customer.name} sell", reseller=customer.reseller)
            Peer.objects.filter(pk=customer.pk).update(sell_rate_table=table)
            customer.sell_rate_table = table
        prefix = f"999{next(numbers):06d}"
        rate = Rate(
            prefix=prefix,
            destination=destination or f"Test {prefix}",
            price=Decimal(0),
            connection_fee=Decimal(cost),
            effective_from=datetime(2000, 1, 1, tzinfo=UTC),
        )
        table_id = customer.sell_rate_table_id
        rate_services.add_rates(customer.sell_rate_table, [rate], actor=Scope.system())
        # add_rates writes into the live version: the index of that version is made again.
        lookup.index_path(table_id, lookup.live_version(table_id)).unlink(missing_ok=True)
        lookup.forget_indexes()
        values = {
            "customer": customer,
            "callee": prefix + "1",
            "rating_state": Cdr.RatingState.UNRATED,
            "sell_cost": None,
            "buy_cost": None,
            "billable_seconds": 0,
        }
        return CdrFactory(**(values | fields))

    yield make
    lookup.forget_indexes()


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = FAST_HASHERS


@pytest.fixture(autouse=True)
def fresh_rate_indexes(tmp_path, settings):
    """Rate indexes under this test's directory, none left open by another test; node
    addresses numbered from 1 again (NodeFactory's sequence is process-wide, and past 255
    nodes its 10.0.0.<n> stop being addresses PostgreSQL's inet column takes)."""
    from apps.rates import lookup

    settings.PREFIX_INDEX_DIR = tmp_path / "prefix-index"
    NodeFactory.reset_sequence()
    lookup.forget_indexes()
    yield settings.PREFIX_INDEX_DIR
    lookup.forget_indexes()


@contextmanager
def rows_for_module(django_db_blocker) -> Iterator[None]:
    """Write rows once for all of a module's tests; they are rolled back after its last test.

    For modules whose tests only read many rows (query counts): building them for every
    test cost a second or two each. Every test still runs in a savepoint of its own, so
    what a test writes is undone after it; the module's rows stay until the module ends.
    A module using this must not mix in tests that need an empty database.
    """
    with (
        django_db_blocker.unblock(),
        override_settings(PASSWORD_HASHERS=FAST_HASHERS),
        transaction.atomic(),
    ):
        NodeFactory.reset_sequence()
        try:
            yield
        finally:
            transaction.set_rollback(True)


def module_crowd(build_world):
    """The `crowd`, `cast` and `world` fixtures of a module that reads one cast and one world
    built by `build_world(cast)` in all its tests (rows_for_module): assign them at module level,
    `crowd, cast, world = module_crowd(build_world)`."""

    @pytest.fixture(scope="module", name="crowd")
    def crowd(django_db_setup, django_db_blocker):
        with rows_for_module(django_db_blocker):
            built = build_cast()
            yield built, build_world(built)

    @pytest.fixture(name="cast")
    def cast(crowd, db):
        return crowd[0]

    @pytest.fixture(name="world")
    def world(crowd, db):
        return crowd[1]

    return crowd, cast, world


@pytest.fixture
def login(client):
    """`login(user)`: the test client, signed in as `user` with the cast's password."""

    def sign_in(user):
        client.logout()
        assert client.login(username=user.get_username(), password=PASSWORD)
        return client

    return sign_in


@pytest.fixture
def api():
    """`api(key)`: an APIClient that sends `Authorization: Bearer <key>` (no key: anonymous)."""

    def make(key: str | None = None) -> APIClient:
        client = APIClient()
        if key:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return make


@pytest.fixture
def world(db, fresh_rate_indexes):
    """The call-control world of tests/switching.py: nodes, a prepaid customer, four
    suppliers with buy prices and gateways, and a least-cost plan."""
    return build_world(fresh_rate_indexes)


@pytest.fixture
def one_minute(transactional_db):
    """A prepaid customer with money for exactly one minute, and two nodes (server databases only)."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises every writer itself; this race needs a server database")
    return build_one_minute()


@pytest.fixture(autouse=True)
def fresh_call_control_snapshot():
    # A process keeps its call-control snapshot between calls; most tests change the
    # database inside a transaction that never commits, so the generation bump announced
    # changes get after commit (apps.core.changes) never comes. tests/core/test_changes*.py
    # commit for real and prove the snapshot follows without this reset.
    from apps.callcontrol import snapshot

    snapshot.forget()
    yield
    snapshot.forget()


@pytest.fixture(scope="session", autouse=True)
def settle_heap():
    """Call control ends each snapshot rebuild with a full garbage collection and a gc.freeze()
    (snapshot._settle_heap: production's p99 with 10,000 peers in the snapshot). In a test
    process, which holds every test module and the suite's collected tests, that collection
    took 0.2-0.4 s of each rebuild, 60-85 worker-seconds a pass, and no test reads what it does:
    here it is skipped. This fixture gives the real one; tests/callcontrol/test_snapshot_heap.py
    puts it back and checks it."""
    from apps.callcontrol import snapshot

    real = snapshot._settle_heap
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshot, "_settle_heap", lambda: None)
        yield real


# Tests that start engines or a cluster keep to one xdist worker each (`make test` runs
# with --dist loadgroup): they measure timing on a 2-core machine and share nothing else.
SERIAL_GROUPS = {
    "tests/opensips/test_live": "engines",
    "tests/nodes/test_sync_live.py": "engines",
    "tests/engines/test_opensips_mi.py": "engines",
    "tests/media/test_live": "engines",
    "tests/engines/test_freeswitch_esl_live.py": "engines",
    "tests/media/test_listener_live.py": "engines",
    "tests/capture/test_live": "engines",
}


@pytest.fixture(scope="session", autouse=True)
def worker_files(tmp_path_factory):
    """Each xdist worker keeps its files apart: two workers' databases both hold a rate table
    1, and one shared index file would serve one worker the other's prices."""
    from django.conf import settings

    root = tmp_path_factory.mktemp("var")
    names = ("PREFIX_INDEX_DIR", "PRICE_IMPORT_DIR", "RECORDINGS_DIR", "CAPTURES_DIR", "ANNOUNCEMENTS_DIR")
    before = {name: getattr(settings, name) for name in names}
    for name in names:
        setattr(settings, name, root / name.removesuffix("_DIR").lower().replace("_", "-"))
    yield root
    for name, value in before.items():
        setattr(settings, name, value)


# Tests of the FreeSWITCH ESL driver and listener run gevent, whose loop (libev) reads the
# clock by a system call that faketime cannot move while Python's clock moves: under
# `make test-dates` their deadlines never come. The same holds for threads' timed waits
# (the heartbeat thread while the billing loop runs), and redis-server does not start under
# libfaketime at all (the qcluster tests start their own). They read no calendar date; they
# need a server database, so SQLite's pass skips them and MariaDB's runs them on the real clock.
REAL_CLOCK = (
    "tests/engines/test_freeswitch_esl",
    "tests/engines/test_freeswitch_events.py",
    "tests/media/test_listener",
    "tests/cluster/test_presence_qcluster.py",
    "tests/cluster/test_presence.py::test_the_heartbeat_goes_on_while_the_billing_loop_holds_the_worker",
    # named signs its answers to updates with the time (TSIG), on the real clock.
    "tests/cluster/test_dns.py",
)


# What a test asks for when it reads or writes the database (pytest-django).
DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "live_server"}
)


def pytest_addoption(parser):
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="Leave out the tests that touch no database: they answer the same on every one "
        "(CI's second database pass).",
    )


def uses_database(item) -> bool:
    """A django_db test, one that asks for a database fixture, or one with a fixture of ours
    that opens the database itself (django_db_blocker: the live engines' worlds)."""
    if item.get_closest_marker("django_db") or item.get_closest_marker("mariadb"):
        return True
    if DATABASE_FIXTURES & set(item.fixturenames):
        return True
    definitions = getattr(item, "_fixtureinfo", None)
    for name in item.fixturenames:
        for definition in definitions.name2fixturedefs.get(name, ()) if definitions else ():
            func = getattr(definition, "func", None)
            if "django_db_blocker" in definition.argnames and not getattr(func, "__module__", "").startswith(
                "pytest_django"
            ):
                return True
    return False


def pytest_collection_modifyitems(config, items):
    if config.getoption("--database-tests-only"):
        kept = [item for item in items if uses_database(item)]
        config.hook.pytest_deselected(items=[item for item in items if not uses_database(item)])
        items[:] = kept
    for item in items:
        if item.nodeid.startswith(REAL_CLOCK):
            item.add_marker(pytest.mark.real_clock)
        group = "galera" if item.get_closest_marker("galera") else None
        for prefix, name in SERIAL_GROUPS.items():
            if item.nodeid.startswith(prefix):
                group = name
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """After a worker's last test, before its session fixtures drop the test database: close
    the call-control threads' connections, as the server's stop does. PostgreSQL refuses to
    drop a database that other sessions are still connected to."""
    endpoint = sys.modules.get("apps.callcontrol.endpoint")
    if nextitem is None and endpoint is not None:
        endpoint.close_connections()
