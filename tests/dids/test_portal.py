"""The portal's Numbers pages: a customer's own DIDs, where they ring, and what they cost."""

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.dids import services
from apps.opensips.models import Location
from tests.dids.conftest import SYSTEM, add_sip_account, make_did

NUMBERS = reverse("portal:numbers")


def number_url(did) -> str:
    return reverse("portal:number", args=[did.pk])


def register(account, *, seconds: int) -> None:
    """A contact of `account` in OpenSIPS's location table, expiring `seconds` from now."""
    Location.objects.create(
        username=account.username,
        domain=account.domain,
        contact=f"sip:{account.username}@198.51.100.7:5060",
        expires=int(timezone.now().timestamp()) + seconds,
    )


def test_a_customer_sees_its_numbers_where_they_ring_and_what_they_cost(client, cast, numbers):
    register(numbers.sip_a, seconds=600)
    client.force_login(cast.a.customer_user)

    page = client.get(NUMBERS)

    assert page.status_code == 200
    body = page.content.decode()
    assert body.count('<tr class="did">') == 1
    assert numbers.a.number in body and str(numbers.sip_a) in body
    assert "registered" in body and "not registered" not in body
    assert "5.00 USD" in body and "0.0100 USD" in body
    assert numbers.b.number not in body and numbers.stock.number not in body
    assert f'href="{NUMBERS}" aria-current="page"' in body


def test_an_expired_registration_reads_as_not_registered(client, cast, numbers):
    register(numbers.sip_a, seconds=-60)
    client.force_login(cast.a.customer_user)
    assert "Not registered" in client.get(number_url(numbers.a)).content.decode()
    assert "not registered" in client.get(NUMBERS).content.decode()


def test_the_number_page_lists_targets_in_order(client, cast, numbers):
    mobile = add_sip_account(cast.a.customer, "a-mobile")
    register(mobile, seconds=600)
    services.set_targets(numbers.a, [(mobile, 10), (numbers.sip_a, None)], actor=SYSTEM)
    client.force_login(cast.a.customer_user)

    body = client.get(number_url(numbers.a)).content.decode()

    assert body.index(str(mobile)) < body.index(str(numbers.sip_a))
    assert body.count('<tr class="target">') == 2
    assert "Registered" in body and "Not registered" in body


def test_what_a_number_costs_its_provider_is_not_shown(client, cast, numbers):
    client.force_login(cast.a.customer_user)
    for url in (NUMBERS, number_url(numbers.a)):
        body = client.get(url).content.decode()
        assert cast.supplier.name not in body
        assert "0.0020" not in body and "1.00 USD" not in body  # buy per minute and per month


@pytest.mark.parametrize("kind", ["b", "stock"])
def test_someone_elses_number_is_a_404(client, cast, numbers, kind):
    client.force_login(cast.a.customer_user)
    assert client.get(number_url(getattr(numbers, kind))).status_code == 404


def test_staff_get_the_customers_only_page(client, cast, numbers):
    client.force_login(cast.a.staff)
    assert client.get(NUMBERS).status_code == 403
    assert client.get(number_url(numbers.a)).status_code == 403


def test_a_customer_without_numbers_is_told_so(client, cast):
    client.force_login(cast.b.customer_user)
    assert "You have no numbers yet" in client.get(NUMBERS).content.decode()


def test_the_page_costs_a_fixed_number_of_queries(client, cast, numbers, django_assert_max_num_queries):
    for n in range(20):
        sip = add_sip_account(cast.a.customer, f"ext{n}")
        make_did(f"4420794603{n:02d}", customer=cast.a.customer, targets=[(sip, None), (numbers.sip_a, 5)])
    client.force_login(cast.a.customer_user)
    with django_assert_max_num_queries(12):
        body = client.get(NUMBERS).content.decode()
    assert body.count('<tr class="did">') == 21
