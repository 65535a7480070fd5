"""API clients with a Bearer key, and reseller A's objects that nobody else may reach."""

import copy
import functools
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.utils import timezone

from apps.billing import services as billing
from apps.peers import services as peer_services
from apps.peers.models import Peer
from apps.rates import services as rate_services
from apps.rates.models import Rate
from apps.tenancy.scope import Scope
from tests.conftest import Cast
from tests.factories import CdrFactory, make_peer, make_rate_table

SYSTEM = Scope.system()
SIP_PASSWORD = "sip-Pass-2024"
SCHEMA = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"


def load_yaml(text: str | bytes):
    """yaml.safe_load, by libyaml where PyYAML has it: the same safe YAML, several times as fast."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)


def committed_schema() -> dict:
    """docs/openapi.yaml as a dict of the caller's own (free to change).

    The file is 300 kB: PyYAML's pure-Python loader took a second or more for each of the
    twenty reads the API tests made. It is read once per process and each caller gets a copy.
    """
    return copy.deepcopy(_parsed_schema())


@functools.cache
def _parsed_schema() -> dict:
    return load_yaml(SCHEMA.read_text())


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def ids(response) -> set[int]:
    return {row["id"] for row in results(response)}


def add_rate(table, prefix: str, price: str, *, start=None, end=None) -> Rate:
    rate = Rate(
        prefix=prefix,
        destination=f"Destination {prefix}",
        price=Decimal(price),
        effective_from=start or timezone.now() - timedelta(days=1),
        effective_to=end,
    )
    rate_services.add_rates(table, [rate], actor=SYSTEM)
    return Rate.objects.get(table=table, prefix=prefix, effective_from=rate.effective_from)


@dataclass
class World:
    """Objects of reseller A that do not belong to A's cast customer (so its key is a stranger too)."""

    peer: Peer
    user_peer: Peer
    endpoint: object
    gateway: object
    sip_account: object
    account: object
    ledger_entry: object
    rate_table: object
    rate: object
    cdr: object

    def object_for(self, prefix: str):
        return {
            "peers": self.peer,
            "endpoints": self.endpoint,
            "gateways": self.gateway,
            "sip-accounts": self.sip_account,
            "accounts": self.account,
            "ledger-entries": self.ledger_entry,
            "rate-tables": self.rate_table,
            "rates": self.rate,
            "cdrs": self.cdr,
        }[prefix]


@pytest.fixture
def world(cast: Cast) -> World:
    return build_world(cast)


def build_world(cast: Cast) -> World:
    table = make_rate_table("Retail A2", reseller=cast.a.reseller)
    peer = make_peer("Customer A2", reseller=cast.a.reseller, sell_rate_table_id=table.pk)
    user_peer = make_peer("Trunk A3", role=Peer.Role.USER, reseller=cast.a.reseller)
    entry, _ = billing.post_payment(peer.account, actor=SYSTEM, amount=Decimal("25"), reference="wire-1")
    return World(
        peer=peer,
        user_peer=user_peer,
        endpoint=peer_services.add_endpoint(peer, actor=SYSTEM, ip="192.0.2.10"),
        gateway=peer_services.add_gateway(user_peer, actor=SYSTEM, name="pbx", host="pbx.example.net"),
        sip_account=peer_services.add_sip_account(
            peer, actor=SYSTEM, username="a2-office", domain="sip.example.net", password=SIP_PASSWORD
        ),
        account=peer.account,
        ledger_entry=entry,
        rate_table=table,
        rate=add_rate(table, "44", "0.010"),
        cdr=CdrFactory(customer=peer, supplier=cast.supplier, node=cast.node),
    )
