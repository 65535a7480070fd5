"""Who reaches the admin at all, and which modules each kind of login gets."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from apps.cdr.models import Cdr
from apps.nodes.models import ClusterSettings, Node
from apps.peers.models import Gateway, Peer
from apps.tenancy.models import Reseller
from tests.admin.conftest import admin_url, listed

OPERATOR_ONLY = [Node, ClusterSettings, Gateway]


def test_operator_lists_every_peer_and_reaches_the_cluster_pages(cast, login):
    client = login(cast.operator)
    assert listed(client.get(admin_url(Peer, "changelist"))) == set(Peer.objects.values_list("pk", flat=True))
    assert len(listed(client.get(admin_url(Peer, "changelist")))) == 4
    assert client.get(admin_url(Node, "changelist")).status_code == 200
    assert client.get(admin_url(cast.node)).status_code == 200


def test_site_header_names_the_product(cast, login):
    response = login(cast.operator).get(reverse("admin:index"))
    assert response.context["site_header"] == "Smartswitch"
    assert ">Smartswitch</a>" in response.content.decode()


@pytest.mark.parametrize(
    "path", ["admin:index", "admin:peers_peer_changelist", "admin:billing_account_changelist"]
)
def test_customer_logins_are_sent_to_the_admin_login(path, cast, login):
    url = reverse(path)
    response = login(cast.a.customer_user).get(url)
    assert response.status_code == 302
    assert response.url == f"{reverse('admin:login')}?next={url}"


def test_a_customer_login_marked_staff_still_sees_nothing(cast, login):
    user = cast.a.customer_user
    get_user_model().objects.filter(pk=user.pk).update(is_staff=True)
    client = login(user)
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert index.context["app_list"] == []
    assert client.get(admin_url(Peer, "changelist")).status_code == 403
    assert client.get(admin_url(cast.a.customer)).status_code == 403


@pytest.mark.parametrize("model", OPERATOR_ONLY)
def test_reseller_staff_cannot_open_operator_pages(model, cast, login):
    assert login(cast.a.staff).get(admin_url(model, "changelist")).status_code == 403
    assert login(cast.operator).get(admin_url(model, "changelist")).status_code in (200, 302)


def test_reseller_staff_index_shows_its_modules_and_not_the_operators(cast, login):
    index = login(cast.a.staff).get(reverse("admin:index"))
    models = {m["object_name"] for app in index.context["app_list"] for m in app["models"]}
    assert {
        "Peer",
        "Endpoint",
        "SipAccount",
        "RateTable",
        "Account",
        "LedgerEntry",
        "Cdr",
        "AuditEntry",
    } <= models
    assert not models & {"Node", "ClusterSettings", "Gateway", "User", "Group"}


def test_reseller_staff_see_only_their_own_reseller(cast, login):
    assert listed(login(cast.a.staff).get(admin_url(Reseller, "changelist"))) == {cast.a.reseller.pk}


def test_reseller_staff_never_see_the_supplier_leg_of_a_call(world, cast, login):
    response = login(cast.a.staff).get(admin_url(world.a.cdr))
    page = response.content.decode()
    assert response.status_code == 200
    assert cast.supplier.name not in page
    assert "buy_cost" not in page
    operator_page = login(cast.operator).get(admin_url(world.a.cdr)).content.decode()
    assert cast.supplier.name in operator_page


def test_reseller_staff_cannot_add_operator_owned_kinds(cast, login):
    client = login(cast.a.staff)
    assert client.get(admin_url(Reseller, "add")).status_code == 403
    assert client.get(admin_url(Cdr, "add")).status_code == 403


@pytest.mark.parametrize(
    "lookup", ["buy_cost__gt", "supplier__id__exact", "node__id__exact", "supplier_billable_seconds__gte"]
)
def test_reseller_staff_cannot_filter_on_columns_they_are_not_shown(lookup, world, cast, login):
    url = admin_url(Cdr, "changelist")
    assert login(cast.a.staff).get(url, {lookup: "0"}).status_code == 400
    assert login(cast.operator).get(url, {lookup: "0"}).status_code == 200
