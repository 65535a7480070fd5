"""Bundles through the REST API: each key reads what it may, the operator and resellers keep
their catalogues and subscribe their customers through the services; someone else's object is
a 404, a refused or malformed write a 400 naming the field."""

from datetime import timedelta

import pytest

from apps.bundles.models import Bundle, Subscription
from tests.api.conftest import ids, results
from tests.bundles.world import WHO, module_bundles
from tests.conftest import key_of

sold, cast = module_bundles()

BUNDLES = "/api/v1/bundles/"
SUBSCRIPTIONS = "/api/v1/bundle-subscriptions/"
USAGE = "/api/v1/bundle-usage/"


def url(base: str, obj, what: str = "") -> str:
    return f"{base}{obj.pk}/" + (f"{what}/" if what else "")


def errors(response, status: int = 400) -> dict:
    assert response.status_code == status, (response.status_code, response.content)
    return response.json()


# --- who sees what --------------------------------------------------------------------------


@pytest.mark.parametrize("who", WHO)
def test_each_key_lists_and_reads_only_the_bundles_and_subscriptions_it_may(api, cast, sold, who):
    client = api(key_of(cast, who))

    for base, what, objects in [
        (BUNDLES, "bundles", sold.bundles),
        (SUBSCRIPTIONS, "subscriptions", sold.subscriptions),
    ]:
        visible = sold.visible(who, what)
        assert ids(client.get(base)) == visible, (who, what)
        for obj in objects:
            expected = 200 if obj.pk in visible else 404
            assert client.get(url(base, obj)).status_code == expected, (who, obj)


@pytest.mark.parametrize("who", WHO)
def test_each_key_reads_only_the_usage_of_subscriptions_it_may(api, cast, sold, who):
    client = api(key_of(cast, who))
    mine = who in ("operator", "a.staff", "a.customer")

    assert ids(client.get(USAGE)) == ({sold.a_now.pk, sold.a_last.pk} if mine else set())
    assert client.get(url(USAGE, sold.a_now)).status_code == (200 if mine else 404)


def test_a_customer_lists_only_the_bundles_it_has(api, cast, sold):
    other = Bundle.objects.create(reseller=cast.a.reseller, name="Unsold", minutes=5, prefixes="1")

    assert ids(api(cast.a.customer_key).get(BUNDLES)) == {sold.a.pk}
    assert other.pk in ids(api(cast.a.staff_key).get(BUNDLES))


def test_a_subscription_shows_this_periods_included_used_and_left(api, cast, sold):
    row = api(cast.a.customer_key).get(url(SUBSCRIPTIONS, sold.a_sub)).json()

    assert (row["bundle_name"], row["kind"]) == ("Germany 60", "minutes")
    period = row["current_period"]
    assert (period["period_start"], period["period_end"]) == (
        sold.a_now.period_start.isoformat(),
        sold.a_now.period_end.isoformat(),
    )
    assert (period["included_seconds"], period["used_seconds"], period["left_seconds"]) == (3600, 1815, 1785)
    assert period["calls"] == 3
    assert period["left_money"] == "0.000000"  # amounts travel as strings


def test_usage_is_filtered_by_subscription_and_period(api, cast, sold):
    client = api(cast.operator_key)
    day_in_last = sold.a_last.period_start + timedelta(days=3)

    assert ids(client.get(USAGE, {"subscription": sold.a_sub.pk})) == {sold.a_now.pk, sold.a_last.pk}
    assert ids(client.get(USAGE, {"subscription": sold.b_sub.pk})) == set()
    assert ids(client.get(USAGE, {"period": day_in_last.isoformat()})) == {sold.a_last.pk}
    assert ids(client.get(USAGE, {"period_start": sold.a_now.period_start.isoformat()})) == {sold.a_now.pk}
    # Naming a subscription the key may not see is the same 400 as naming none that exists.
    assert "subscription" in errors(api(cast.b.staff_key).get(USAGE, {"subscription": sold.a_sub.pk}))
    assert "period" in errors(client.get(USAGE, {"period": "yesterday"}))


# --- the catalogue --------------------------------------------------------------------------


def test_a_reseller_creates_a_bundle_in_its_own_catalogue(api, cast):
    body = {"name": "UK 300", "kind": "minutes", "minutes": 300, "price": "3.50", "prefixes": "44\n447"}

    response = api(cast.a.staff_key).post(BUNDLES, body, format="json")

    assert response.status_code == 201, response.content
    bundle = Bundle.objects.get(pk=response.json()["id"])
    assert (bundle.reseller_id, bundle.minutes) == (cast.a.reseller.pk, 300)
    assert bundle.prefix_list() == ["44", "447"]
    assert response.json()["price"] == "3.500000"
    assert bundle.pk not in ids(api(cast.b.staff_key).get(BUNDLES))


def test_only_the_operator_names_a_bundles_reseller(api, cast):
    body = {"name": "Mine", "minutes": 10, "prefixes": "1", "reseller": cast.b.reseller.pk}

    assert errors(api(cast.a.staff_key).post(BUNDLES, body, format="json")) == {
        "reseller": ["Only the operator sets this."]
    }
    made = api(cast.operator_key).post(BUNDLES, body, format="json")
    assert made.status_code == 201 and made.json()["reseller"] == cast.b.reseller.pk


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "No minutes", "kind": "minutes", "prefixes": "44"}, "minutes"),
        ({"name": "Both", "kind": "money", "money": "5", "minutes": 3, "prefixes": "44"}, "minutes"),
        ({"name": "Nowhere", "kind": "minutes", "minutes": 10}, "prefixes"),
        ({"name": "Letters", "kind": "minutes", "minutes": 10, "prefixes": "44\nUK"}, "prefixes"),
        ({"name": "Cheap", "kind": "minutes", "minutes": 10, "prefixes": "44", "price": "-1"}, "price"),
        ({"name": "Odd", "kind": "hours", "minutes": 10, "prefixes": "44"}, "kind"),
        ({"name": "Odd", "minutes": 10, "prefixes": "44", "period": "yearly"}, "period"),
        ({"name": "Big", "kind": "money", "money": "1e12", "prefixes": "44"}, "money"),
        ({"kind": "minutes", "minutes": 10, "prefixes": "44"}, "name"),
        ({"name": "Neg", "kind": "minutes", "minutes": -5, "prefixes": "44"}, "minutes"),
    ],
)
def test_a_malformed_bundle_is_a_400_naming_the_field(api, cast, body, field):
    response = api(cast.a.staff_key).post(BUNDLES, body, format="json")

    assert field in errors(response), response.json()
    assert not Bundle.objects.filter(name=body.get("name", ""), reseller=cast.a.reseller).exists()


def test_a_bundle_is_changed_by_its_owner_and_its_kind_is_fixed_once_sold(api, cast, sold):
    client = api(cast.a.staff_key)

    changed = client.patch(url(BUNDLES, sold.a), {"name": "Germany 90", "minutes": 90}, format="json")
    to_money = {"kind": "money", "money": "5", "minutes": None}
    refused = client.patch(url(BUNDLES, sold.a), to_money, format="json")

    assert changed.status_code == 200 and changed.json()["minutes"] == 90
    assert "kind" in errors(refused)
    assert Bundle.objects.get(pk=sold.a.pk).kind == "minutes"


def test_another_resellers_bundle_is_untouchable(api, cast, sold):
    client = api(cast.a.staff_key)

    assert client.patch(url(BUNDLES, sold.b), {"name": "Hijacked"}, format="json").status_code == 404
    assert client.patch(url(BUNDLES, sold.operator), {"name": "Hijacked"}, format="json").status_code == 404
    customer = api(cast.a.customer_key)
    assert customer.patch(url(BUNDLES, sold.a), {"name": "Mine"}, format="json").status_code == 403
    assert client.delete(url(BUNDLES, sold.a)).status_code == 405
    assert Bundle.objects.get(pk=sold.b.pk).name == "France money"


# --- subscriptions --------------------------------------------------------------------------


def test_a_reseller_subscribes_its_customer_to_its_bundle(api, cast, sold):
    start = sold.a_sub.starts_on
    extra = Bundle.objects.create(reseller=cast.a.reseller, name="Spain", minutes=30, prefixes="34", price=2)
    body = {"account": cast.a.customer.account.pk, "bundle": extra.pk, "starts_on": start.isoformat()}

    response = api(cast.a.staff_key).post(SUBSCRIPTIONS, body, format="json")

    assert response.status_code == 201, response.content
    subscription = Subscription.objects.get(pk=response.json()["id"])
    assert (subscription.account_id, subscription.bundle_id) == (cast.a.customer.account.pk, extra.pk)
    assert subscription.fee is not None and subscription.fee.amount == 2  # its price, a recurring fee
    assert response.json()["fee"] == subscription.fee_id


def test_a_reseller_cannot_subscribe_another_resellers_customer_nor_to_another_resellers_bundle(
    api, cast, sold
):
    client = api(cast.a.staff_key)
    start = sold.a_sub.starts_on.isoformat()

    others_customer = {"account": cast.b.customer.account.pk, "bundle": sold.a.pk, "starts_on": start}
    others_bundle = {"account": cast.a.customer.account.pk, "bundle": sold.b.pk, "starts_on": start}
    operators_bundle = {"account": cast.a.customer.account.pk, "bundle": sold.operator.pk, "starts_on": start}

    assert "account" in errors(client.post(SUBSCRIPTIONS, others_customer, format="json"))
    assert "bundle" in errors(client.post(SUBSCRIPTIONS, others_bundle, format="json"))
    assert "bundle" in errors(client.post(SUBSCRIPTIONS, operators_bundle, format="json"))
    assert Subscription.objects.count() == 3


def test_the_service_refuses_a_bundle_of_another_catalogue_even_to_the_operator(api, cast, sold):
    body = {"account": cast.a.customer.account.pk, "bundle": sold.b.pk, "starts_on": "2026-01-01"}

    assert errors(api(cast.operator_key).post(SUBSCRIPTIONS, body, format="json")) == {
        "bundle": ["This account can have its reseller's bundles only."]
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"bundle": "ref", "starts_on": "2026-01-01"}, "account"),
        ({"account": "ref", "starts_on": "2026-01-01"}, "bundle"),
        ({"account": "ref", "bundle": "ref"}, "starts_on"),
        ({"account": "ref", "bundle": "ref", "starts_on": "first of May"}, "starts_on"),
        ({"account": "ref", "bundle": "ref", "starts_on": "2026-05-02", "ends_on": "2026-05-01"}, "ends_on"),
        ({"account": "x", "bundle": "ref", "starts_on": "2026-01-01"}, "account"),
    ],
)
def test_a_malformed_subscription_is_a_400_naming_the_field(api, cast, sold, body, field):
    refs = {"account": cast.a.customer.account.pk, "bundle": sold.a.pk}
    body = {name: refs[name] if value == "ref" else value for name, value in body.items()}

    assert field in errors(api(cast.a.staff_key).post(SUBSCRIPTIONS, body, format="json"))


def test_customers_neither_subscribe_nor_end(api, cast, sold):
    client = api(cast.a.customer_key)
    body = {"account": cast.a.customer.account.pk, "bundle": sold.a.pk, "starts_on": "2026-01-01"}

    assert client.post(SUBSCRIPTIONS, body, format="json").status_code == 403
    assert client.post(url(SUBSCRIPTIONS, sold.a_sub, "end"), {"ends_on": "2030-01-01"}).status_code == 403


def test_a_subscription_is_ended_by_its_action_with_its_fee(api, cast, sold):
    ends_on = sold.a_now.period_end

    response = api(cast.a.staff_key).post(
        url(SUBSCRIPTIONS, sold.a_sub, "end"), {"ends_on": ends_on.isoformat()}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["ends_on"] == ends_on.isoformat()
    subscription = Subscription.objects.select_related("fee").get(pk=sold.a_sub.pk)
    assert subscription.ends_on == subscription.fee.ends_on == ends_on


def test_ending_is_refused_with_the_field_named_and_others_subscriptions_are_404(api, cast, sold):
    client = api(cast.a.staff_key)
    before = (sold.a_sub.starts_on - timedelta(days=1)).isoformat()

    assert "ends_on" in errors(client.post(url(SUBSCRIPTIONS, sold.a_sub, "end"), {"ends_on": before}))
    assert "ends_on" in errors(client.post(url(SUBSCRIPTIONS, sold.a_sub, "end"), {}))
    assert client.post(url(SUBSCRIPTIONS, sold.b_sub, "end"), {"ends_on": "2030-01-01"}).status_code == 404
    assert Subscription.objects.get(pk=sold.b_sub.pk).ends_on is None


def test_subscriptions_are_filtered_by_account_bundle_and_day(api, cast, sold):
    client = api(cast.operator_key)

    assert ids(client.get(SUBSCRIPTIONS, {"account": cast.b.customer.account.pk})) == {sold.b_sub.pk}
    assert ids(client.get(SUBSCRIPTIONS, {"bundle": sold.operator.pk})) == {sold.operator_sub.pk}
    before = (sold.a_sub.starts_on - timedelta(days=1)).isoformat()
    assert ids(client.get(SUBSCRIPTIONS, {"in_force_on": before})) == set()


def test_list_endpoints_cost_a_fixed_number_of_queries(api, cast, sold, django_assert_max_num_queries):
    client = api(cast.operator_key)
    client.get(SUBSCRIPTIONS)

    for path in (BUNDLES, SUBSCRIPTIONS, USAGE):
        with django_assert_max_num_queries(6):
            assert results(client.get(path))
