"""Reseller A's staff cannot list, open, change or delete anything of reseller B.

The cast and both resellers' holdings are built once for the module (rows_for_module): each
test's changes, deletions and sessions are rolled back after it, as before.
"""

import pytest
from django.forms.models import model_to_dict
from django.urls import reverse

from tests.admin.conftest import admin_url, build_world, form_payload, listed
from tests.conftest import module_crowd

ALL_KINDS = [
    "reseller",
    "apikey",
    "peer",
    "endpoint",
    "sipaccount",
    "rewriterule",
    "blocklist",
    "ratetable",
    "rate",
    "account",
    "ledgerentry",
    "cdr",
    "auditentry",
    "invoice",
    "issuer",
]
# What reseller staff may change, with a change a browser could make to each.
CHANGES = {
    "peer": ("name", "Hijacked"),
    "endpoint": ("description", "hijacked"),
    "sipaccount": ("enabled", False),
    "rewriterule": ("replacement", "0"),
    "ratetable": ("name", "Hijacked"),
    "account": ("low_balance_threshold", "5.000000"),
    "blocklist": ("name", "Hijacked"),
    "issuer": ("legal_name", "Hijacked"),
}
DELETABLE = ["endpoint", "sipaccount", "rewriterule"]


crowd, cast, world = module_crowd(build_world)


def snapshot(obj):
    fresh = type(obj)._default_manager.get(pk=obj.pk)
    return {**model_to_dict(fresh), "_updated": getattr(fresh, "updated_at", None)}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_changelist_shows_own_objects_and_hides_the_other_resellers(kind, world, cast, login):
    own, other = getattr(world.a, kind), getattr(world.b, kind)
    shown = listed(login(cast.a.staff).get(admin_url(own, "changelist")))
    assert own.pk in shown
    assert other.pk not in shown


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_change_page_of_the_other_resellers_object_reads_as_absent(kind, world, cast, login):
    client = login(cast.a.staff)
    assert client.get(admin_url(getattr(world.a, kind))).status_code == 200
    response = client.get(admin_url(getattr(world.b, kind)), follow=True)
    assert response.redirect_chain[0] == (reverse("admin:index"), 302)
    assert "doesn\u2019t exist" in response.content.decode()
    assert str(getattr(world.b, kind)) not in response.content.decode()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_history_of_the_other_resellers_object_reads_as_absent(kind, world, cast, login):
    response = login(cast.a.staff).get(admin_url(getattr(world.b, kind), "history"))
    assert response.status_code == 302
    assert response.url == reverse("admin:index")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_posting_a_change_to_the_other_resellers_object_changes_nothing(kind, world, cast, login):
    other = getattr(world.b, kind)
    payload = form_payload(login(cast.operator).get(admin_url(other)))
    if kind in CHANGES:
        field, value = CHANGES[kind]
        payload[field] = value
        if value is False:
            payload.pop(field)
    before = snapshot(other)
    response = login(cast.a.staff).post(admin_url(other), payload)
    assert response.status_code in (302, 403)
    if response.status_code == 302:
        assert response.url == reverse("admin:index")
    assert snapshot(other) == before


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_the_same_change_is_applied_to_the_resellers_own_object(kind, world, cast, login):
    """The counterpart of the test above: its payload is a real, accepted change."""
    own = getattr(world.a, kind)
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(own)))
    field, value = CHANGES[kind]
    payload[field] = value
    if value is False:
        payload.pop(field)
    response = client.post(admin_url(own), payload)
    assert response.status_code == 302, response.context["adminform"].form.errors
    fresh = type(own)._default_manager.get(pk=own.pk)
    assert str(getattr(fresh, field)) == str(value)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_deleting_the_other_resellers_object_is_refused(kind, world, cast, login):
    other = getattr(world.b, kind)
    response = login(cast.a.staff).post(admin_url(other, "delete"), {"post": "yes"})
    assert response.status_code in (302, 403)
    assert type(other)._default_manager.filter(pk=other.pk).exists()


@pytest.mark.parametrize("kind", DELETABLE)
def test_reseller_deletes_its_own_peer_rows_through_the_service(kind, world, cast, login):
    own = getattr(world.a, kind)
    response = login(cast.a.staff).post(admin_url(own, "delete"), {"post": "yes"})
    assert response.status_code == 302
    assert not type(own)._default_manager.filter(pk=own.pk).exists()
    assert cast.a.reseller.pk in set(
        type(own)
        ._meta.apps.get_model("audit", "AuditEntry")
        .objects.filter(action=f"{own._meta.model_name}.deleted", object_id=str(own.pk))
        .values_list("reseller_id", flat=True)
    )


@pytest.mark.parametrize("kind", DELETABLE)
def test_bulk_delete_of_the_other_resellers_rows_deletes_nothing(kind, world, cast, login):
    own, other = getattr(world.a, kind), getattr(world.b, kind)
    response = login(cast.a.staff).post(
        admin_url(own, "changelist"),
        {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert type(other)._default_manager.filter(pk=other.pk).exists()


def test_suspend_action_cannot_reach_the_other_resellers_peer(world, cast, login):
    response = login(cast.a.staff).post(
        admin_url(world.a.peer, "changelist"),
        {"action": "suspend_selected", "_selected_action": [world.b.peer.pk], "apply": "1", "reason": "x"},
    )
    assert response.status_code in (200, 302)
    world.b.peer.refresh_from_db()
    assert world.b.peer.suspended_at is None


@pytest.mark.parametrize("tool", ["payment", "adjust"])
def test_money_tools_on_the_other_resellers_account_are_404(tool, world, cast, login):
    other = world.b.account
    url = admin_url(other, "tool", other.pk, tool)
    client = login(cast.a.staff)
    assert client.get(url).status_code == 404
    assert client.post(url, {"amount": "50", "reason": "x", "reference": "r"}).status_code == 404
    other.refresh_from_db()
    assert other.balance == world.b.ledgerentry.amount
