"""Blocklists through the admin: created, edited as text and attached to peers only through
services, and only by their owner."""

import pytest
from django.urls import reverse

from apps.audit.models import AuditEntry
from apps.peers import services
from apps.peers.models import Blocklist, BlocklistEntry, Peer
from apps.tenancy.scope import Scope
from tests.admin.conftest import admin_url, form_payload, listed
from tests.admin.test_choices import peer_form

SYSTEM = Scope.system()


def blocklist_form(**overrides):
    return {
        "name": "Premium",
        "kind": "destination",
        "description": "",
        "prefixes": "",
        "note": "",
        "shown_entries": "",
        **overrides,
    }


def prefixes_of(blocklist) -> set[str]:
    return set(BlocklistEntry.objects.filter(blocklist=blocklist).values_list("prefix", flat=True))


@pytest.fixture
def global_list(cast):
    return services.create_blocklist(actor=SYSTEM, name="Fraud ranges", kind="destination")


def test_reseller_staff_create_a_list_with_pasted_prefixes(cast, login):
    # The posted owner and applies_to_all are the operator's fields: ignored for staff.
    response = login(cast.a.staff).post(
        admin_url(Blocklist, "add"),
        blocklist_form(
            name="Premium UK",
            prefixes="4490\r\n 4491 \r\n\r\n4490\r\n449012\r\n",
            note="ticket 7",
            reseller=cast.b.reseller.pk,
            applies_to_all="on",
        ),
    )
    assert response.status_code == 302
    blocklist = Blocklist.objects.get(name="Premium UK")
    assert (blocklist.reseller, blocklist.applies_to_all) == (cast.a.reseller, False)
    assert prefixes_of(blocklist) == {"4490", "4491", "449012"}
    assert set(blocklist.entries.values_list("note", flat=True)) == {"ticket 7"}
    added = AuditEntry.objects.get(action="blocklist.entries_added", object_id=str(blocklist.pk))
    assert (added.actor, added.data["count"]) == (cast.a.staff, 3)
    assert AuditEntry.objects.filter(action="blocklist.created", actor=cast.a.staff).exists()


def test_the_reseller_form_hides_the_owner_and_applies_to_all(cast, login):
    form = login(cast.a.staff).get(admin_url(Blocklist, "add")).context["adminform"].form
    assert {"name", "kind", "prefixes"} <= set(form.fields)
    assert not {"reseller", "applies_to_all"} & set(form.fields)
    operator_form = login(cast.operator).get(admin_url(Blocklist, "add")).context["adminform"].form
    assert {"reseller", "applies_to_all"} <= set(operator_form.fields)


def test_a_bad_prefix_is_shown_on_the_text_and_nothing_is_created(cast, login):
    response = login(cast.a.staff).post(
        admin_url(Blocklist, "add"), blocklist_form(prefixes="4490\n+4491\n44a\n")
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["prefixes"] == [
        "+4491: Use digits only.",
        "44a: Use digits only.",
    ]
    assert not Blocklist.objects.filter(name="Premium").exists()
    assert not AuditEntry.objects.filter(action="blocklist.created").exists()


def test_editing_the_text_adds_and_removes_entries_through_the_services(world, cast, login):
    blocklist = world.a.blocklist
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(blocklist)))
    assert payload["prefixes"] == "44900"
    payload.update(prefixes="44901\r\n44902\r\n", note="fraud wave")
    assert client.post(admin_url(blocklist), payload).status_code == 302
    assert prefixes_of(blocklist) == {"44901", "44902"}
    removed = AuditEntry.objects.get(action="blocklist.entries_removed", object_id=str(blocklist.pk))
    added = AuditEntry.objects.filter(action="blocklist.entries_added", object_id=str(blocklist.pk)).latest(
        "id"
    )
    assert (removed.data["prefixes"], added.data["count"], added.actor) == (["44900"], 2, cast.a.staff)


def test_a_save_that_leaves_the_text_alone_keeps_entries_added_meanwhile(world, cast, login):
    blocklist = world.a.blocklist
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(blocklist)))
    services.add_blocklist_entries(blocklist, ["4499"], actor=SYSTEM)  # e.g. through the API
    payload["description"] = "premium-rate numbers"
    assert client.post(admin_url(blocklist), payload).status_code == 302
    blocklist.refresh_from_db()
    assert blocklist.description == "premium-rate numbers"
    assert prefixes_of(blocklist) == {"44900", "4499"}


def test_editing_entries_that_changed_meanwhile_is_refused(world, cast, login):
    blocklist = world.a.blocklist
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(blocklist)))
    services.add_blocklist_entries(blocklist, ["4499"], actor=SYSTEM)
    payload["prefixes"] = "44900\n4498"
    response = client.post(admin_url(blocklist), payload)
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["prefixes"]
    assert error.startswith("Someone changed these entries")
    assert prefixes_of(blocklist) == {"44900", "4499"}


def test_reseller_staff_neither_see_nor_change_another_resellers_list(world, cast, login):
    other = world.b.blocklist
    payload = form_payload(login(cast.operator).get(admin_url(other)))
    payload.update(name="Hijacked", prefixes="44900\n1")
    client = login(cast.a.staff)
    assert listed(client.get(admin_url(Blocklist, "changelist"))) == {world.a.blocklist.pk}
    entries = listed(client.get(admin_url(BlocklistEntry, "changelist")))
    assert entries == set(world.a.blocklist.entries.values_list("pk", flat=True))
    assert client.get(admin_url(other)).status_code == 302
    response = client.post(admin_url(other), payload)
    assert (response.status_code, response.url) == (302, reverse("admin:index"))
    other.refresh_from_db()
    assert other.name == "Premium b"
    assert prefixes_of(other) == {"44900"}


def test_reseller_staff_cannot_attach_another_resellers_list_through_the_peer_form(world, cast, login):
    peer = cast.a.customer
    client = login(cast.a.staff)
    payload = form_payload(client.get(admin_url(peer)))
    payload["blocklists"] = [str(world.a.blocklist.pk), str(world.b.blocklist.pk)]
    response = client.post(admin_url(peer), payload)
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["blocklists"]
    assert error.startswith("Select a valid choice.")
    assert list(peer.blocklists.all()) == [world.a.blocklist]


def test_the_peer_form_offers_the_owners_lists_and_the_operators_to_the_operator(
    world, cast, global_list, login
):
    def offered(user):
        form = login(user).get(admin_url(cast.a.customer)).context["adminform"].form
        return set(form.fields["blocklists"].queryset)

    assert offered(cast.a.staff) == {world.a.blocklist}
    assert offered(cast.operator) == {world.a.blocklist, global_list}


def test_the_operator_attaches_its_global_list_to_a_resellers_peer(world, cast, global_list, login):
    peer = cast.a.customer
    client = login(cast.operator)
    payload = form_payload(client.get(admin_url(peer)))
    payload["blocklists"] = [str(world.a.blocklist.pk), str(global_list.pk)]
    assert client.post(admin_url(peer), payload).status_code == 302
    assert set(peer.blocklists.all()) == {world.a.blocklist, global_list}
    audit = AuditEntry.objects.filter(action="peer.blocklists_set", object_id=str(peer.pk)).latest("id")
    assert (audit.actor, audit.data["after"]) == (cast.operator, ["Fraud ranges", "Premium a"])
    # Reseller staff do not see the operator's list, and saving their peer keeps it.
    staff = login(cast.a.staff)
    page = staff.get(admin_url(peer))
    assert "Fraud ranges" not in page.content.decode()
    payload = form_payload(page)
    payload["max_calls"] = "5"
    assert staff.post(admin_url(peer), payload).status_code == 302
    assert set(peer.blocklists.all()) == {world.a.blocklist, global_list}


def test_the_operator_cannot_give_a_new_peer_of_a_the_list_of_b(world, cast, login):
    # On the add form the owner is chosen with the lists, so the service is what refuses.
    response = login(cast.operator).post(
        admin_url(Peer, "add"),
        peer_form(name="Acme", reseller=cast.a.reseller.pk, blocklists=[world.b.blocklist.pk]),
    )
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["blocklists"]
    assert error == "A blocklist of another owner cannot be attached to this peer: Premium b."
    assert not Peer.objects.filter(name="Acme").exists()


def test_a_new_peer_gets_its_lists_through_the_service(world, cast, login):
    response = login(cast.a.staff).post(
        admin_url(Peer, "add"), peer_form(name="Acme", blocklists=[world.a.blocklist.pk])
    )
    assert response.status_code == 302
    peer = Peer.objects.get(name="Acme")
    assert list(peer.blocklists.all()) == [world.a.blocklist]
    assert AuditEntry.objects.filter(
        action="peer.blocklists_set", object_id=str(peer.pk), actor=cast.a.staff
    ).exists()
