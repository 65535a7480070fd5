"""Form choices are scoped like lists: a reseller cannot name another reseller's objects."""

from decimal import Decimal

from apps.peers.models import Endpoint, Peer
from apps.rates.models import Rate
from apps.tenancy.models import ApiKey
from tests.admin.conftest import admin_url


def peer_form(**overrides):
    return {
        "name": "New Customer",
        "company": "",
        "role": "customer",
        "enabled": "on",
        "max_calls": "",
        "max_cps": "",
        "tech_prefix": "",
        "sell_rate_table": "",
        "profit_control": "no_loss",  # an operator-only field, ignored in reseller staff's posts
        "notes": "",
        "currency": "",
        "account_mode": "prepaid",
        "credit_limit": "0",
        **{
            f"{prefix}-{key}": value
            for prefix in ("endpoints", "sip_accounts", "gateways", "rewrite_rules")
            for key, value in (("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0"))
        },
        **overrides,
    }


def test_naming_another_resellers_price_list_is_a_form_error(cast, login):
    response = login(cast.a.staff).post(
        admin_url(Peer, "add"), peer_form(sell_rate_table=cast.b.sell_table.pk)
    )
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["sell_rate_table"]
    assert error.startswith("Select a valid choice.")
    assert not Peer.objects.filter(name="New Customer").exists()


def test_naming_its_own_price_list_creates_the_peer_for_the_reseller(cast, login):
    # The posted reseller is ignored: staff always create for their own reseller.
    response = login(cast.a.staff).post(
        admin_url(Peer, "add"), peer_form(sell_rate_table=cast.a.sell_table.pk, reseller=cast.b.reseller.pk)
    )
    assert response.status_code == 302
    peer = Peer.objects.get(name="New Customer")
    assert (peer.reseller, peer.sell_rate_table) == (cast.a.reseller, cast.a.sell_table)


def test_the_add_form_offers_only_own_price_lists(cast, login):
    page = login(cast.a.staff).get(admin_url(Peer, "add")).content.decode()
    assert cast.a.sell_table.name in page
    assert cast.b.sell_table.name not in page
    assert "Wholesale" not in page  # the operator's own list


def test_filters_offer_only_own_price_lists(cast, login):
    page = login(cast.a.staff).get(admin_url(Peer, "changelist")).content.decode()
    assert f"sell_rate_table__id__exact={cast.a.sell_table.pk}" in page
    assert f"sell_rate_table__id__exact={cast.b.sell_table.pk}" not in page
    assert "Reseller B" not in page


def test_an_endpoint_cannot_be_added_to_another_resellers_peer(cast, login):
    response = login(cast.a.staff).post(
        admin_url(Endpoint, "add"),
        {
            "peer": cast.b.customer.pk,
            "ip": "198.51.100.7",
            "mask": "32",
            "port": "0",
            "transport": "any",
            "enabled": "on",
            "description": "",
        },
    )
    assert response.status_code == 200
    assert "peer" in response.context["adminform"].form.errors
    assert not Endpoint.objects.filter(ip="198.51.100.7").exists()


def test_autocomplete_of_peers_returns_only_own_peers(cast, login):
    response = login(cast.a.staff).get(
        "/admin/autocomplete/",
        {"app_label": "peers", "model_name": "endpoint", "field_name": "peer", "term": "Cust"},
    )
    assert response.status_code == 200
    assert [row["text"] for row in response.json()["results"]] == [cast.a.customer.name]


def test_a_rate_cannot_be_added_to_another_resellers_price_list(cast, login):
    response = login(cast.a.staff).post(
        admin_url(Rate, "add"),
        {
            "table": cast.b.sell_table.pk,
            "prefix": "49",
            "destination": "Germany",
            "price": "0.02",
            "connection_fee": "0",
            "min_seconds": "1",
            "increment_seconds": "1",
            "free_seconds": "0",
            "effective_from_0": "2024-01-01",
            "effective_from_1": "00:00:00",
            "effective_to_0": "",
            "effective_to_1": "",
        },
    )
    assert response.status_code == 200
    assert "table" in response.context["adminform"].form.errors
    assert not Rate.objects.filter(prefix="49").exists()


def test_a_rate_added_to_an_own_price_list_goes_through_the_service(cast, login):
    response = login(cast.a.staff).post(
        admin_url(Rate, "add"),
        {
            "table": cast.a.sell_table.pk,
            "prefix": "49",
            "destination": "Germany",
            "price": "0.02",
            "connection_fee": "0",
            "min_seconds": "30",
            "increment_seconds": "6",
            "free_seconds": "0",
            "effective_from_0": "2024-01-01",
            "effective_from_1": "00:00:00",
            "effective_to_0": "",
            "effective_to_1": "",
        },
    )
    assert response.status_code == 302
    rate = Rate.objects.get(prefix="49")
    assert (rate.table, rate.price, rate.billing_notation) == (cast.a.sell_table, Decimal("0.02"), "30/6/0")


def test_a_customer_key_cannot_be_issued_for_another_resellers_peer(cast, login):
    response = login(cast.a.staff).post(
        admin_url(ApiKey, "add"), {"name": "stolen", "scope": "customer", "peer": cast.b.customer.pk}
    )
    assert response.status_code == 200
    assert "peer" in response.context["adminform"].form.errors
    assert not ApiKey.objects.filter(name="stolen").exists()


def test_reseller_staff_cannot_issue_operator_keys(cast, login):
    response = login(cast.a.staff).post(admin_url(ApiKey, "add"), {"name": "root", "scope": "operator"})
    assert response.status_code == 200
    assert "scope" in response.context["adminform"].form.errors
    assert not ApiKey.objects.filter(name="root").exists()
