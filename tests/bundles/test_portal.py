"""The portal's Bundles page: a customer's own subscriptions with this period's included, used
and left, and the periods past; someone else's subscription is a 404, staff go to the admin."""

import pytest
from django.urls import reverse
from django.utils import translation

from tests.bundles.world import WHO, module_bundles
from tests.conftest import user_of

sold, cast = module_bundles()

BUNDLES = reverse("portal:bundles")


def page_url(subscription) -> str:
    return reverse("portal:bundle", args=[subscription.pk])


@pytest.mark.parametrize("who", WHO)
def test_scoping_matrix(client, cast, sold, who):
    client.force_login(user_of(cast, who))
    own = {"a.customer": sold.a_sub, "b.customer": sold.b_sub}.get(who)

    listing = client.get(BUNDLES)
    pages = {s.pk: client.get(page_url(s)).status_code for s in sold.subscriptions}

    if own is None:
        assert listing.status_code == 403
        assert set(pages.values()) == {403}
        return
    assert listing.status_code == 200
    assert [s.pk for s in listing.context["subscriptions"]] == [own.pk]
    assert pages == {pk: 200 if pk == own.pk else 404 for pk in pages}


def test_the_page_shows_this_periods_included_used_and_left_in_minutes(client, cast, sold):
    client.force_login(cast.a.customer_user)

    body = client.get(BUNDLES).content.decode()

    assert "Germany 60" in body and "Germany mobile" in body and "49" in body
    assert f"{sold.a_now.period_start:%Y-%m-%d}" in body
    row = body[body.index('id="subscription-') : body.index("</tr>", body.index('id="subscription-'))]
    assert ">60:00<" in row and ">30:15<" in row and ">29:45<" in row and ">3<" in row
    past = body[body.index('id="past-periods"') :]
    assert f"{sold.a_last.period_start:%Y-%m-%d}" in past and ">0:00<" in past and ">12<" in past
    assert f"{sold.a_now.period_start:%Y-%m-%d}" not in past  # this period is not past yet
    assert 'href="/portal/bundles/"' in body and 'aria-current="page"' in body


def test_a_money_bundle_shows_money_and_an_unused_period_from_the_offer(client, cast, sold):
    client.force_login(cast.b.customer_user)

    body = client.get(BUNDLES).content.decode()

    assert "France money" in body
    assert body.count("5.00 USD") >= 2 and "0.00 USD" in body  # included and left; nothing used
    assert "No past periods yet." in body


def test_a_subscriptions_page_lists_its_periods(client, cast, sold):
    client.force_login(cast.a.customer_user)

    response = client.get(page_url(sold.a_sub))

    assert [u.pk for u in response.context["page_obj"]] == [sold.a_now.pk, sold.a_last.pk]
    assert "30:15 used" in response.content.decode()


def test_the_page_costs_a_fixed_number_of_queries(client, cast, sold, django_assert_max_num_queries):
    client.force_login(cast.a.customer_user)
    client.get(BUNDLES)

    with django_assert_max_num_queries(12):
        assert client.get(BUNDLES).status_code == 200


def test_the_page_speaks_spanish(client, cast, sold):
    client.force_login(cast.a.customer_user)

    with translation.override("es"):
        body = client.get(BUNDLES, HTTP_ACCEPT_LANGUAGE="es").content.decode()

    assert "Bonos" in body and "Periodos anteriores" in body
