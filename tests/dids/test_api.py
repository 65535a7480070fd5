"""/api/v1/dids/: scoped lists, writes through the services, refusals that name the field."""

from decimal import Decimal

import pytest

from apps.billing.models import RecurringFee
from apps.dids.models import Did
from apps.peers import services as peer_services
from apps.peers.models import Peer
from tests.dids.conftest import SYSTEM, add_sip_account, make_did
from tests.factories import make_peer

DIDS = "/api/v1/dids/"


def url(did) -> str:
    return f"{DIDS}{did.pk}/"


def ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


# --- reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("operator_key", {"a", "b", "stock"}),
        ("a.staff_key", {"a"}),
        ("a.customer_key", {"a"}),
        ("b.staff_key", {"b"}),
    ],
)
def test_each_key_lists_the_dids_it_may_see(api, cast, numbers, key, expected):
    tenant, _, name = key.rpartition(".")
    token = getattr(getattr(cast, tenant), name) if tenant else getattr(cast, name)
    assert ids(api(token).get(DIDS)) == {getattr(numbers, label).pk for label in expected}


@pytest.mark.parametrize("key", ["a.staff_key", "a.customer_key"])
def test_another_resellers_did_is_404_to_read_change_and_delete(api, cast, numbers, key):
    client = api(getattr(cast.a, key.split(".")[1]))
    assert client.get(url(numbers.b)).status_code == 404
    assert client.post(f"{url(numbers.b)}set-targets/", {"targets": []}, format="json").status_code == 404
    if key == "a.staff_key":
        assert client.patch(url(numbers.b), {"sell_monthly": "0"}, format="json").status_code == 404
        assert client.delete(url(numbers.b)).status_code == 404
    numbers.b.refresh_from_db()
    assert (numbers.b.sell_monthly, numbers.b.targets.count()) == (Decimal("5"), 1)


def test_a_did_shows_its_targets_in_order_and_its_prices_as_strings(api, cast, numbers):
    row = api(cast.operator_key).get(url(numbers.a)).json()
    assert row["number"] == "442079460001" and row["last_number"] == "" and row["size"] == 1
    assert row["customer"] == cast.a.customer.pk and row["supplier"] == cast.supplier.pk
    assert row["targets"] == [
        {"sip_account": numbers.sip_a.pk, "gateway": None, "setup_timeout": 20, "name": str(numbers.sip_a)}
    ]
    assert (row["sell_monthly"], row["buy_per_minute"]) == ("5.000000", "0.002000")


@pytest.mark.parametrize("key", ["a.staff_key", "a.customer_key"])
def test_what_a_number_costs_us_is_shown_to_the_operator_only(api, cast, numbers, key):
    row = api(getattr(cast.a, key.split(".")[1])).get(url(numbers.a)).json()
    assert not {"supplier", "buy_monthly", "buy_per_minute"} & set(row)
    assert row["sell_monthly"] == "5.000000"


def test_holds_finds_the_block_that_holds_a_number(api, cast, numbers):
    client = api(cast.operator_key)
    assert ids(client.get(DIDS, {"holds": "442079460150"})) == {numbers.stock.pk}
    assert ids(client.get(DIDS, {"holds": "442079460001"})) == {numbers.a.pk}
    assert ids(client.get(DIDS, {"holds": "442079460200"})) == set()
    assert ids(client.get(DIDS, {"holds": "4420794601500"})) == set()  # another length


def test_holds_is_scoped_like_the_list(api, cast, numbers):
    assert ids(api(cast.a.staff_key).get(DIDS, {"holds": "442079460002"})) == set()


def test_filters_by_prefix_customer_supplier_and_stock(api, cast, numbers):
    client = api(cast.operator_key)
    assert ids(client.get(DIDS, {"prefix": "4420794601"})) == {numbers.stock.pk}
    assert ids(client.get(DIDS, {"customer": cast.b.customer.pk})) == {numbers.b.pk}
    assert ids(client.get(DIDS, {"in_stock": "true"})) == {numbers.stock.pk}
    assert len(ids(client.get(DIDS, {"supplier": cast.supplier.pk}))) == 3


@pytest.mark.parametrize(("name", "value"), [("holds", "44x"), ("prefix", "+44"), ("holds", "4" * 33)])
def test_a_filter_that_is_not_digits_is_a_400_naming_it(api, cast, numbers, name, value):
    response = api(cast.operator_key).get(DIDS, {name: value})
    assert response.status_code == 400
    assert name in response.json()


def test_a_reseller_cannot_filter_by_supplier(api, cast, numbers):
    response = api(cast.a.staff_key).get(DIDS, {"supplier": cast.supplier.pk})
    assert response.status_code == 400
    assert "supplier" in response.json()


def test_the_list_costs_a_fixed_number_of_queries(api, cast, numbers, django_assert_max_num_queries):
    for n in range(20):
        sip = add_sip_account(cast.a.customer, f"ext{n}")
        make_did(f"4420794603{n:02d}", customer=cast.a.customer, targets=[(sip, None), (numbers.sip_a, 5)])
    client = api(cast.a.staff_key)
    # Key lookup and its touch, COUNT, the page, its targets, their accounts and gateways.
    with django_assert_max_num_queries(6):
        assert len(ids(client.get(DIDS, {"limit": 100}))) == 21


# --- writing ------------------------------------------------------------------------------------


def test_the_operator_adds_a_did_on_a_customer_ringing_its_accounts_in_order(api, cast):
    office = add_sip_account(cast.a.customer, "office")
    mobile = add_sip_account(cast.a.customer, "mobile")
    body = {
        "number": "442079460050",
        "supplier": cast.supplier.pk,
        "customer": cast.a.customer.pk,
        "buy_monthly": "1.00",
        "sell_monthly": "4.00",
        "sell_per_minute": "0.01",
        "targets": [{"sip_account": mobile.pk, "setup_timeout": 15}, {"sip_account": office.pk}],
    }
    response = api(cast.operator_key).post(DIDS, body, format="json")

    assert response.status_code == 201, response.content
    row = response.json()
    assert [t["sip_account"] for t in row["targets"]] == [mobile.pk, office.pk]
    did = Did.objects.get(pk=row["id"])
    assert RecurringFee.objects.get(pk=did.sell_fee_id).account == cast.a.customer.account
    assert RecurringFee.objects.get(pk=did.buy_fee_id).account == cast.supplier.account


def test_a_block_is_added_in_stock(api, cast):
    response = api(cast.operator_key).post(
        DIDS, {"number": "442079460100", "last_number": "442079460199"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert (response.json()["size"], response.json()["customer"]) == (100, None)


@pytest.mark.parametrize("key", ["a.staff_key", "a.customer_key"])
def test_only_the_operator_adds_dids(api, cast, key):
    response = api(getattr(cast.a, key.split(".")[1])).post(DIDS, {"number": "442079460050"}, format="json")
    assert response.status_code == 403
    assert not Did.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"number": "44 20 7946"}, "number"),
        ({"number": ""}, "number"),
        ({}, "number"),
        ({"number": "442079460100", "last_number": "4420794601"}, "last_number"),
        ({"number": "442079460100", "last_number": "442079460000"}, "last_number"),
        ({"number": "442079460100", "last_number": "4420794601x9"}, "last_number"),
        ({"number": "442079460150"}, "number"),  # held by the block in stock
        ({"number": "442079460050", "sell_monthly": "-1"}, "sell_monthly"),
        ({"number": "442079460050", "sell_monthly": "1.0000001"}, "sell_monthly"),
        ({"number": "442079460050", "buy_per_minute": "100000000"}, "buy_per_minute"),
        ({"number": "442079460050", "sell_per_minute": "cheap"}, "sell_per_minute"),
        ({"number": "442079460050", "min_seconds": 0}, "min_seconds"),
        ({"number": "442079460050", "customer": 10**9}, "customer"),
        ({"number": "442079460050", "targets": "nowhere"}, "targets"),
        ({"number": "442079460050", "targets": [{}]}, "targets"),
        ({"number": "442079460050", "targets": [{"sip_account": "x"}]}, "targets"),
        ({"number": "442079460050", "targets": [{"setup_timeout": 500}]}, "targets"),
    ],
)
def test_a_malformed_body_is_a_400_naming_the_field(api, cast, numbers, body, field):
    response = api(cast.operator_key).post(DIDS, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert Did.objects.count() == 3


def test_targets_of_another_customer_are_refused_naming_targets(api, cast, numbers):
    body = {
        "number": "442079460050",
        "customer": cast.a.customer.pk,
        "targets": [{"sip_account": numbers.sip_b.pk}],
    }
    response = api(cast.operator_key).post(DIDS, body, format="json")
    assert response.status_code == 400
    assert "Target 1" in response.json()["targets"][0]


def test_a_reseller_names_only_its_own_customers_accounts(api, cast, numbers):
    response = api(cast.a.staff_key).patch(
        url(numbers.a), {"targets": [{"sip_account": numbers.sip_b.pk}]}, format="json"
    )
    assert response.status_code == 400
    assert "does not exist" in str(response.json()["targets"])


def test_a_reseller_sets_its_customers_price_and_targets(api, cast, numbers):
    mobile = add_sip_account(cast.a.customer, "a-mobile")
    response = api(cast.a.staff_key).patch(
        url(numbers.a),
        {"sell_monthly": "6.50", "targets": [{"sip_account": mobile.pk}, {"sip_account": numbers.sip_a.pk}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert [t["sip_account"] for t in response.json()["targets"]] == [mobile.pk, numbers.sip_a.pk]
    assert RecurringFee.objects.get(pk=numbers.a.sell_fee_id).amount == Decimal("6.5")


@pytest.mark.parametrize("field", ["buy_monthly", "supplier"])
def test_a_reseller_cannot_set_what_the_number_costs_us(api, cast, numbers, field):
    value = "0" if field == "buy_monthly" else None
    response = api(cast.a.staff_key).patch(url(numbers.a), {field: value}, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_a_reseller_cannot_change_the_number(api, cast, numbers):
    response = api(cast.a.staff_key).patch(url(numbers.a), {"number": "442079460009"}, format="json")
    assert response.status_code == 403
    assert "number" in response.json()


def test_patching_the_customer_assigns_and_null_releases(api, cast, numbers, second_customer_a):
    client = api(cast.a.staff_key)
    desk = second_customer_a.sip_accounts.get()
    response = client.patch(
        url(numbers.a),
        {"customer": second_customer_a.pk, "targets": [{"sip_account": desk.pk}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert (response.json()["customer"], response.json()["targets"][0]["sip_account"]) == (
        second_customer_a.pk,
        desk.pk,
    )

    response = client.patch(url(numbers.a), {"customer": None}, format="json")
    assert response.status_code == 200, response.content
    numbers.a.refresh_from_db()
    assert (numbers.a.customer, numbers.a.sell_fee_id, numbers.a.targets.count()) == (None, None, 0)
    assert client.get(url(numbers.a)).status_code == 404  # back in the operator's stock


def test_a_reseller_cannot_hand_a_did_to_another_resellers_customer(api, cast, numbers):
    response = api(cast.a.staff_key).patch(url(numbers.a), {"customer": cast.b.customer.pk}, format="json")
    assert response.status_code == 400  # B's customer does not exist for A
    numbers.a.refresh_from_db()
    assert numbers.a.customer == cast.a.customer


def test_a_refused_assignment_undoes_the_price_sent_with_it(api, cast, numbers):
    trunk = make_peer("Carrier Z", role=Peer.Role.SUPPLIER)
    response = api(cast.operator_key).patch(
        url(numbers.stock), {"sell_monthly": "9", "customer": trunk.pk}, format="json"
    )
    assert response.status_code == 400
    assert "customer" in response.json()
    numbers.stock.refresh_from_db()
    assert (numbers.stock.sell_monthly, numbers.stock.customer) == (Decimal("5"), None)


def test_a_customer_sets_the_targets_of_its_own_did(api, cast, numbers):
    trunk = make_peer("PBX A", role=Peer.Role.USER, reseller=cast.a.reseller)
    gateway = peer_services.add_gateway(trunk, actor=SYSTEM, name="pbx", host="pbx.example.net")
    mobile = add_sip_account(cast.a.customer, "a-mobile")
    client = api(cast.a.customer_key)

    response = client.post(
        f"{url(numbers.a)}set-targets/",
        {"targets": [{"sip_account": mobile.pk, "setup_timeout": 10}, {"sip_account": numbers.sip_a.pk}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert [t["sip_account"] for t in response.json()["targets"]] == [mobile.pk, numbers.sip_a.pk]

    # Another peer's gateway does not exist for the customer.
    response = client.post(
        f"{url(numbers.a)}set-targets/", {"targets": [{"gateway": gateway.pk}]}, format="json"
    )
    assert response.status_code == 400
    assert "targets" in response.json()
    # Customers read everything else.
    assert client.patch(url(numbers.a), {"sell_monthly": "0"}, format="json").status_code == 403
    assert client.delete(url(numbers.a)).status_code == 403


def test_set_targets_without_a_list_is_a_400_naming_targets(api, cast, numbers):
    response = api(cast.a.customer_key).post(f"{url(numbers.a)}set-targets/", {}, format="json")
    assert response.status_code == 400
    assert "targets" in response.json()


def test_a_did_on_a_customer_is_not_deleted_one_in_stock_is(api, cast, numbers):
    client = api(cast.operator_key)
    response = client.delete(url(numbers.a))
    assert response.status_code == 400
    assert "release it" in response.json()["customer"][0]
    assert client.delete(url(numbers.stock)).status_code == 204
    assert not Did.objects.filter(pk=numbers.stock.pk).exists()


def test_resellers_cannot_delete_dids(api, cast, numbers):
    assert api(cast.a.staff_key).delete(url(numbers.a)).status_code == 403
    assert Did.objects.filter(pk=numbers.a.pk).exists()
