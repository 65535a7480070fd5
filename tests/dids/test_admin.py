"""The DID admin: the operator's stock and prices; a reseller's customers' numbers, nobody else's."""

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.billing.models import RecurringFee
from apps.dids.models import Did
from tests.admin.conftest import admin_url, form_payload, listed, messages_of, tool_url
from tests.dids.conftest import add_sip_account, make_did


def targets_of(did) -> list:
    return [(t.sip_account_id, t.setup_timeout) for t in Did.objects.get(pk=did.pk).targets.all()]


# --- pages --------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["operator", "staff"])
def test_the_list_and_change_pages_render(numbers, cast, login, who):
    client = login(cast.operator if who == "operator" else cast.a.staff)
    page = client.get(admin_url(Did, "changelist"))
    assert page.status_code == 200
    assert str(numbers.sip_a) in page.content.decode()  # the targets column
    assert client.get(admin_url(numbers.a)).status_code == 200


def test_the_operator_sees_stock_and_every_customers_dids(numbers, cast, login):
    client = login(cast.operator)
    assert listed(client.get(admin_url(Did, "changelist"))) == {numbers.a.pk, numbers.b.pk, numbers.stock.pk}
    assert client.get(admin_url(Did, "add")).status_code == 200
    assert client.get(admin_url(numbers.stock)).status_code == 200


def test_a_reseller_lists_its_customers_dids_only(numbers, cast, login):
    assert listed(login(cast.a.staff).get(admin_url(Did, "changelist"))) == {numbers.a.pk}


@pytest.mark.parametrize("kind", ["b", "stock"])
def test_another_resellers_did_and_the_stock_read_as_absent_to_a_reseller(numbers, cast, login, kind):
    other = getattr(numbers, kind)
    client = login(cast.a.staff)
    response = client.get(admin_url(other), follow=True)
    assert response.redirect_chain[0] == (reverse("admin:index"), 302)
    assert str(other) not in response.content.decode()
    assert client.get(tool_url(other, "release")).status_code == 404


def test_a_reseller_cannot_change_another_resellers_did(numbers, cast, login):
    payload = form_payload(login(cast.operator).get(admin_url(numbers.b)))
    payload["sell_monthly"] = "0.01"
    payload["customer"] = str(cast.a.customer.pk)

    response = login(cast.a.staff).post(admin_url(numbers.b), payload)

    assert response.status_code in (302, 403)
    numbers.b.refresh_from_db()
    assert (numbers.b.sell_monthly, numbers.b.customer) == (Decimal("5"), cast.b.customer)
    assert login(cast.a.staff).post(tool_url(numbers.b, "release")).status_code == 404
    numbers.b.refresh_from_db()
    assert numbers.b.customer == cast.b.customer


def test_a_reseller_neither_adds_nor_deletes_dids(numbers, cast, login):
    client = login(cast.a.staff)
    assert client.get(admin_url(Did, "add")).status_code == 403
    assert client.post(admin_url(numbers.a, "delete"), {"post": "yes"}).status_code == 403
    assert Did.objects.filter(pk=numbers.a.pk).exists()


def test_a_reseller_is_not_shown_what_the_number_costs_us(numbers, cast, login):
    client = login(cast.a.staff)
    form = client.get(admin_url(numbers.a)).context["adminform"].form
    assert not {"supplier", "buy_monthly", "buy_per_minute"} & set(form.fields)
    assert {"customer", "sell_monthly", "sell_per_minute"} <= set(form.fields)
    page = client.get(admin_url(Did, "changelist")).content.decode()
    assert cast.supplier.name not in page
    assert (
        client.get(admin_url(Did, "changelist"), {"supplier__id__exact": cast.supplier.pk}).status_code != 200
    )


def test_the_customer_choices_are_the_resellers_own_customers(numbers, cast, login):
    form = login(cast.a.staff).get(admin_url(numbers.a)).context["adminform"].form
    assert set(form.fields["customer"].queryset) == {cast.a.customer}


# --- writes through the services -----------------------------------------------------------------


def test_the_operator_adds_a_did_on_a_customer(cast, login):
    response = login(cast.operator).post(
        admin_url(Did, "add"),
        {
            "number": "442079460050",
            "last_number": "",
            "supplier": cast.supplier.pk,
            "customer": cast.a.customer.pk,
            "hunting": "sequence",
            "enabled": "on",
            "description": "",
            "sell_monthly": "4",
            "sell_per_minute": "0.01",
            "buy_monthly": "1",
            "buy_per_minute": "0",
            "min_seconds": "1",
            "increment_seconds": "1",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    did = Did.objects.get(number="442079460050")
    assert did.customer == cast.a.customer
    assert RecurringFee.objects.get(pk=did.sell_fee_id).amount == Decimal("4")


@pytest.mark.parametrize(
    ("did", "field", "value"),
    [("stock", "last_number", "4420794601x9"), ("a", "number", "442079460150")],
)
def test_a_refused_number_is_shown_on_its_field(numbers, cast, login, did, field, value):
    did = getattr(numbers, did)
    client = login(cast.operator)
    payload = {**form_payload(client.get(admin_url(did))), field: value}

    response = client.post(admin_url(did), payload)

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert getattr(Did.objects.get(pk=did.pk), field) != value


def test_a_reseller_changes_its_customers_price_and_the_fee_follows(numbers, cast, login):
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(numbers.a)))
    payload["sell_monthly"] = "8.00"

    response = client.post(admin_url(numbers.a), payload)

    assert response.status_code == 302
    assert RecurringFee.objects.get(pk=numbers.a.sell_fee_id).amount == Decimal("8")


def test_targets_are_saved_in_position_order_through_the_service(numbers, cast, login):
    mobile = add_sip_account(cast.a.customer, "a-mobile")
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(numbers.a)))
    payload.update(
        {
            "targets-TOTAL_FORMS": "2",
            "targets-0-position": "5",
            "targets-1-position": "1",
            "targets-1-sip_account": str(mobile.pk),
            "targets-1-gateway": "",
            "targets-1-setup_timeout": "12",
        }
    )

    response = client.post(admin_url(numbers.a), payload)

    assert response.status_code == 302, messages_of(response)
    assert targets_of(numbers.a) == [(mobile.pk, 12), (numbers.sip_a.pk, 20)]


def test_a_target_of_another_customer_is_not_a_choice(numbers, cast, login):
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(numbers.a)))
    payload["targets-0-sip_account"] = str(numbers.sip_b.pk)

    response = client.post(admin_url(numbers.a), payload)

    assert response.status_code == 200
    assert targets_of(numbers.a) == [(numbers.sip_a.pk, 20)]


def test_moving_a_did_to_another_customer_drops_its_old_targets(numbers, cast, login, second_customer_a):
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(numbers.a)))
    payload["customer"] = str(second_customer_a.pk)

    response = client.post(admin_url(numbers.a), payload)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    numbers.a.refresh_from_db()
    assert (numbers.a.customer, targets_of(numbers.a)) == (second_customer_a, [])


def test_the_release_tool_puts_the_did_back_in_stock(numbers, cast, login):
    response = login(cast.a.staff).post(tool_url(numbers.a, "release"), follow=True)
    assert any("back in stock" in message for message in messages_of(response))
    numbers.a.refresh_from_db()
    assert numbers.a.customer is None
    assert RecurringFee.objects.filter(ends_on__isnull=False).count() == 1


def test_deleting_a_did_on_a_customer_is_refused_with_the_reason(numbers, cast, login):
    response = login(cast.operator).post(admin_url(numbers.a, "delete"), {"post": "yes"}, follow=True)
    assert any("release it" in message for message in messages_of(response))
    assert Did.objects.filter(pk=numbers.a.pk).exists()


def test_the_operator_deletes_a_did_in_stock(numbers, cast, login):
    response = login(cast.operator).post(admin_url(numbers.stock, "delete"), {"post": "yes"})
    assert response.status_code == 302
    assert not Did.objects.filter(pk=numbers.stock.pk).exists()


def test_searching_a_number_finds_the_block_that_holds_it(numbers, cast, login):
    client = login(cast.operator)
    assert listed(client.get(admin_url(Did, "changelist"), {"q": "442079460150"})) == {numbers.stock.pk}
    assert listed(login(cast.a.staff).get(admin_url(Did, "changelist"), {"q": "442079460150"})) == set()


@pytest.mark.parametrize("who", ["operator", "staff"])
def test_the_list_costs_a_fixed_number_of_queries(numbers, cast, login, who, django_assert_max_num_queries):
    for n in range(20):
        sip = add_sip_account(cast.a.customer, f"ext{n}")
        make_did(f"4420794603{n:02d}", customer=cast.a.customer, targets=[(sip, None)])
    client = login(cast.operator if who == "operator" else cast.a.staff)
    with django_assert_max_num_queries(12):
        response = client.get(admin_url(Did, "changelist"))
    assert len(listed(response)) >= 21
