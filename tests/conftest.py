"""The fixed cast every test can use: an operator, two resellers with staff, a customer
of each, an operator customer and a supplier, with their logins and API keys.

Tenancy tests take an object of reseller A and check that reseller B's staff, key and
customer cannot reach it.
"""

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from apps.cdr.models import Cdr
from apps.peers.models import Peer
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import ApiKey
from apps.tenancy.scope import Scope
from tests.factories import CdrFactory, NodeFactory, make_peer, make_rate_table, make_reseller

PASSWORD = "S3cure-test-pass!"


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
def unrated_call(db, settings, tmp_path):
    """Make a call that the rater prices at exactly `cost`: unrated_call(customer, "0.25", **cdr).

    Calls are charged in production only by the billing loop's rater
    (apps.billing.services.rating.rate_batch): tests make the call with this, then run the
    rater. The customer's sell list gets a rate of the call's own (the cost as connection
    fee, nothing per minute), so the rater finds the price in its index as it finds any.
    """
    from apps.rates import lookup
    from apps.rates import services as rate_services
    from apps.rates.models import Rate

    settings.PREFIX_INDEX_DIR = tmp_path / "prefix-index"
    lookup.forget_indexes()
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
    # The production hasher is slow by design; tests create many logins.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
