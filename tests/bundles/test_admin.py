"""Bundles, subscriptions and usage in the admin: scoped like every admin page, written through
the catalogue services (add and change forms, the "End subscription" tool), never deleted."""

import pytest
from django.urls import reverse

from apps.bundles.models import Bundle, Subscription, Usage
from tests.admin.conftest import admin_url, form_payload, listed, messages_of, tool_url
from tests.bundles.world import WHO, module_bundles
from tests.conftest import user_of

sold, cast = module_bundles()

BUNDLES = reverse("admin:bundles_bundle_changelist")
SUBSCRIPTIONS = reverse("admin:bundles_subscription_changelist")
USAGE = reverse("admin:bundles_usage_changelist")
ADD_BUNDLE = reverse("admin:bundles_bundle_add")
SUBSCRIBE = reverse("admin:bundles_subscription_add")


@pytest.mark.parametrize("who", WHO)
def test_each_login_lists_and_opens_only_what_it_may(cast, sold, login, who):
    client = login(user_of(cast, who))
    if who.endswith("customer"):
        for path in (BUNDLES, SUBSCRIPTIONS, USAGE, admin_url(sold.a)):
            response = client.get(path)
            assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))
        return
    for changelist, what, objects in [
        (BUNDLES, "bundles", sold.bundles),
        (SUBSCRIPTIONS, "subscriptions", sold.subscriptions),
    ]:
        visible = sold.visible(who, what)
        assert listed(client.get(changelist)) == visible, (who, what)
        for obj in objects:
            page = client.get(admin_url(obj))
            if obj.pk in visible:
                assert page.status_code == 200, obj
            else:
                assert page.status_code == 302 and page.url == reverse("admin:index"), obj
    mine = who in ("operator", "a.staff")
    assert listed(client.get(USAGE)) == ({sold.a_now.pk, sold.a_last.pk} if mine else set())


def test_reseller_staff_never_see_the_owner_column_nor_other_resellers_names(cast, sold, login):
    staff = login(cast.a.staff)
    page = staff.get(SUBSCRIPTIONS).content.decode()

    assert "column-owner" not in page and "Reseller B" not in page and "France money" not in page
    assert "column-reseller" not in staff.get(BUNDLES).content.decode()
    assert staff.get(BUNDLES, {"reseller__id__exact": cast.b.reseller.pk}).status_code == 400
    assert "column-owner" in login(cast.operator).get(SUBSCRIPTIONS).content.decode()


def test_the_subscription_list_shows_this_periods_included_used_and_left(
    cast, sold, login, django_assert_max_num_queries
):
    client = login(cast.a.staff)
    client.get(SUBSCRIPTIONS)

    with django_assert_max_num_queries(12):
        response = client.get(SUBSCRIPTIONS)
    page = response.content.decode()
    period = f"{sold.a_now.period_start:%Y-%m-%d} to {sold.a_now.period_end:%Y-%m-%d}"
    assert period in page
    assert "60:00" in page and "30:15" in page and "29:45" in page  # included, used, left


def test_usage_is_listed_read_only_with_what_is_left(cast, sold, login):
    client = login(cast.operator)

    page = client.get(USAGE).content.decode()
    detail = client.get(admin_url(sold.a_last))

    assert "29:45" in page and "0:00" in page  # this month's left, last month's all used
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert client.post(admin_url(sold.a_last), {"calls": "0"}).status_code == 403
    assert client.get(admin_url(sold.a_last, "delete")).status_code == 403
    assert Usage.objects.get(pk=sold.a_last.pk).calls == 12


# --- the catalogue --------------------------------------------------------------------------


def bundle_form(**values) -> dict:
    form = {
        "name": "Spain 30",
        "kind": "minutes",
        "minutes": "30",
        "money": "",
        "period": "monthly",
        "price": "2.00",
        "prefixes": "34",
        "destinations": "",
    }
    return {**form, **values}


def test_a_reseller_adds_a_bundle_to_its_own_catalogue(cast, login):
    response = login(cast.a.staff).post(ADD_BUNDLE, bundle_form())

    assert response.status_code == 302, response.content.decode()[:2000]
    bundle = Bundle.objects.get(name="Spain 30")
    assert (bundle.reseller_id, bundle.minutes, bundle.prefix_list()) == (cast.a.reseller.pk, 30, ["34"])


def test_the_operator_adds_a_bundle_for_a_reseller(cast, login):
    login(cast.operator).post(ADD_BUNDLE, bundle_form(reseller=str(cast.b.reseller.pk)))

    assert Bundle.objects.get(name="Spain 30").reseller_id == cast.b.reseller.pk


def test_a_refused_bundle_shows_the_message_on_its_field(cast, login):
    response = login(cast.a.staff).post(ADD_BUNDLE, bundle_form(minutes="", prefixes="34\nES"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "minutes" in errors and "prefixes" in errors
    assert not Bundle.objects.filter(name="Spain 30").exists()


def test_a_sold_bundles_kind_cannot_change_in_its_form(cast, sold, login):
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(sold.a)))

    renamed = client.post(admin_url(sold.a), {**payload, "name": "Germany 90", "minutes": "90"})
    refused = client.post(admin_url(sold.a), {**payload, "kind": "money", "minutes": "", "money": "5"})

    assert renamed.status_code == 302
    assert refused.status_code == 200 and "kind" in refused.context["adminform"].form.errors
    bundle = Bundle.objects.get(pk=sold.a.pk)
    assert (bundle.name, bundle.minutes, bundle.kind) == ("Germany 90", 90, "minutes")


def test_bundles_are_never_deleted(cast, sold, login):
    client = login(cast.operator)

    assert client.get(admin_url(sold.a, "delete")).status_code == 403
    assert client.post(admin_url(sold.a, "delete"), {"post": "yes"}).status_code == 403
    assert Bundle.objects.filter(pk=sold.a.pk).exists()


# --- subscriptions --------------------------------------------------------------------------


def subscribe_form(account, bundle, starts_on) -> dict:
    return {
        "account": str(account.pk),
        "bundle": str(bundle.pk),
        "starts_on": f"{starts_on:%Y-%m-%d}",
        "ends_on": "",
    }


def test_a_reseller_subscribes_its_customer_and_the_price_becomes_a_fee(cast, sold, login):
    extra = Bundle.objects.create(reseller=cast.a.reseller, name="Spain", minutes=30, prefixes="34", price=2)

    response = login(cast.a.staff).post(
        SUBSCRIBE, subscribe_form(cast.a.customer.account, extra, sold.a_sub.starts_on)
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    subscription = Subscription.objects.select_related("fee").get(bundle=extra)
    assert subscription.account_id == cast.a.customer.account.pk
    assert subscription.fee.amount == 2 and subscription.fee.name == "Bundle Spain"


def test_the_subscribe_form_offers_only_the_resellers_customers_and_bundles(cast, sold, login):
    form = login(cast.a.staff).get(SUBSCRIBE).context["adminform"].form

    assert set(form.fields["account"].queryset) == {cast.a.customer.account}
    assert set(form.fields["bundle"].queryset) == {sold.a}


def test_a_reseller_cannot_subscribe_another_resellers_customer_nor_to_its_bundle(cast, sold, login):
    client = login(cast.a.staff)
    start = sold.a_sub.starts_on

    others_customer = client.post(SUBSCRIBE, subscribe_form(cast.b.customer.account, sold.a, start))
    others_bundle = client.post(SUBSCRIBE, subscribe_form(cast.a.customer.account, sold.b, start))

    assert "account" in others_customer.context["adminform"].form.errors
    assert "bundle" in others_bundle.context["adminform"].form.errors
    assert Subscription.objects.count() == 3


def test_the_service_refusal_lands_on_the_bundle_field(cast, sold, login):
    # The operator may pick any bundle; the service keeps each account to its owner's catalogue.
    response = login(cast.operator).post(
        SUBSCRIBE, subscribe_form(cast.a.customer.account, sold.b, sold.a_sub.starts_on)
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["bundle"] == [
        "This account can have its reseller's bundles only."
    ]
    assert Subscription.objects.count() == 3


def test_a_subscription_is_ended_by_its_tool_and_never_changed_nor_deleted(cast, sold, login):
    client = login(cast.a.staff)
    page = client.get(admin_url(sold.a_sub)).content.decode()
    ends_on = sold.a_now.period_end

    response = client.post(tool_url(sold.a_sub, "end"), {"ends_on": f"{ends_on:%Y-%m-%d}"}, follow=True)

    assert tool_url(sold.a_sub, "end") in page and 'name="_save"' not in page
    assert f"ends on {ends_on}" in " ".join(messages_of(response))
    subscription = Subscription.objects.select_related("fee").get(pk=sold.a_sub.pk)
    assert subscription.ends_on == subscription.fee.ends_on == ends_on
    assert tool_url(sold.a_sub, "end") not in client.get(admin_url(sold.a_sub)).content.decode()
    assert client.get(admin_url(sold.a_sub, "delete")).status_code == 403


def test_ending_before_the_start_is_refused_on_the_field(cast, sold, login):
    before = sold.a_sub.starts_on.replace(day=1).replace(year=sold.a_sub.starts_on.year - 1)

    response = login(cast.a.staff).post(tool_url(sold.a_sub, "end"), {"ends_on": f"{before:%Y-%m-%d}"})

    assert response.status_code == 200 and "ends_on" in response.context["form"].errors
    assert Subscription.objects.get(pk=sold.a_sub.pk).ends_on is None


def test_another_resellers_subscription_has_no_tool(cast, sold, login):
    response = login(cast.a.staff).post(tool_url(sold.b_sub, "end"), {"ends_on": "2030-01-01"})

    assert response.status_code == 404
    assert Subscription.objects.get(pk=sold.b_sub.pk).ends_on is None
