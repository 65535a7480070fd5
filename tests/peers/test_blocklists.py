"""Blocklists are written only through services, which scope, validate and audit."""

import pytest
from django.core.exceptions import ValidationError

from apps.audit.models import AuditEntry
from apps.core.errors import DomainError, NotAllowed
from apps.peers import services
from apps.peers.models import Blocklist, BlocklistEntry
from apps.tenancy.scope import Scope


def staff(tenant) -> Scope:
    return Scope.of_user(tenant.staff)


def prefixes_of(blocklist) -> set[str]:
    return set(BlocklistEntry.objects.filter(blocklist=blocklist).values_list("prefix", flat=True))


@pytest.fixture
def lists(cast, system):
    """A list of each reseller and a global list of the operator."""
    return {
        "a": services.create_blocklist(actor=staff(cast.a), name="Premium", kind="destination"),
        "b": services.create_blocklist(actor=staff(cast.b), name="Premium", kind="destination"),
        "global": services.create_blocklist(
            actor=system, name="Fraud ranges", kind="destination", applies_to_all=True
        ),
    }


def test_reseller_staff_always_create_blocklists_for_their_own_reseller(cast):
    blocklist = services.create_blocklist(
        actor=staff(cast.a), name="Premium", kind="destination", reseller_id=cast.b.reseller.pk
    )
    assert blocklist.reseller_id == cast.a.reseller.pk
    audit = AuditEntry.objects.get(action="blocklist.created", object_id=str(blocklist.pk))
    assert (audit.actor, audit.reseller_id) == (cast.a.staff, cast.a.reseller.pk)


def test_customers_cannot_create_blocklists(cast):
    with pytest.raises(NotAllowed):
        services.create_blocklist(actor=Scope.of_user(cast.a.customer_user), name="Mine", kind="callee")
    assert not Blocklist.objects.exists()


def test_only_the_operators_lists_apply_to_every_call(cast, system, lists):
    with pytest.raises(ValidationError) as error:
        services.create_blocklist(actor=staff(cast.a), name="All", kind="caller", applies_to_all=True)
    assert "applies_to_all" in error.value.message_dict
    with pytest.raises(ValidationError):
        services.update_blocklist(lists["a"], actor=system, changes={"applies_to_all": True})
    lists["a"].refresh_from_db()
    assert not lists["a"].applies_to_all
    assert lists["global"].applies_to_all


def test_a_name_is_unique_per_owner(cast, system, lists):
    with pytest.raises(ValidationError) as error:
        services.create_blocklist(actor=staff(cast.a), name="Premium", kind="callee")
    assert "name" in error.value.message_dict
    with pytest.raises(ValidationError):
        services.create_blocklist(actor=system, name="Fraud ranges", kind="callee")


def test_a_reseller_cannot_change_another_resellers_or_the_operators_list(cast, lists):
    services.add_blocklist_entries(lists["b"], ["4490"], actor=Scope.system())
    a = staff(cast.a)
    with pytest.raises(NotAllowed):
        services.update_blocklist(lists["b"], actor=a, changes={"name": "Hijacked"})
    with pytest.raises(NotAllowed):
        services.update_blocklist(lists["global"], actor=a, changes={"description": "mine"})
    with pytest.raises(NotAllowed):
        services.add_blocklist_entries(lists["b"], ["4491"], actor=a)
    with pytest.raises(NotAllowed):
        services.remove_blocklist_entries(lists["b"], ["4490"], actor=a)
    with pytest.raises(NotAllowed):
        services.add_blocklist_entries(lists["global"], ["4491"], actor=a)
    lists["b"].refresh_from_db()
    assert lists["b"].name == "Premium"
    assert prefixes_of(lists["b"]) == {"4490"}
    assert prefixes_of(lists["global"]) == set()


def test_update_changes_settings_but_not_kind_or_owner(cast, lists):
    a = staff(cast.a)
    with pytest.raises(NotAllowed):
        services.update_blocklist(lists["a"], actor=a, changes={"kind": "caller"})
    with pytest.raises(NotAllowed):
        services.update_blocklist(lists["a"], actor=a, changes={"reseller_id": cast.b.reseller.pk})
    changed = services.update_blocklist(lists["a"], actor=a, changes={"name": "Premium UK"})
    assert (changed.name, changed.kind) == ("Premium UK", "destination")
    assert changed.reseller_id == cast.a.reseller.pk
    audit = AuditEntry.objects.get(action="blocklist.changed", object_id=str(changed.pk))
    assert audit.data["changes"] == {"name": ["Premium", "Premium UK"]}


def test_adding_entries_skips_duplicates_and_writes_one_audit_entry_per_call(cast, lists):
    a, blocklist = staff(cast.a), lists["a"]
    added = services.add_blocklist_entries(
        blocklist, ["4490", "4491", " 4490 ", "4491", "44900"], actor=a, note="ticket 12"
    )
    assert added == 3
    assert services.add_blocklist_entries(blocklist, ["4490", "4492"], actor=a) == 1
    assert prefixes_of(blocklist) == {"4490", "4491", "44900", "4492"}
    assert BlocklistEntry.objects.get(blocklist=blocklist, prefix="4491").note == "ticket 12"
    audits = AuditEntry.objects.filter(action="blocklist.entries_added", object_id=str(blocklist.pk))
    assert [(e.data["count"], e.actor, e.reseller_id) for e in audits.order_by("pk")] == [
        (3, cast.a.staff, cast.a.reseller.pk),
        (1, cast.a.staff, cast.a.reseller.pk),
    ]
    # Nothing new: nothing written, nothing audited.
    assert services.add_blocklist_entries(blocklist, ["4490"], actor=a) == 0
    assert audits.count() == 2


def test_entries_are_digits_only_and_one_bad_prefix_refuses_the_whole_call(cast, lists):
    with pytest.raises(ValidationError) as error:
        services.add_blocklist_entries(lists["a"], ["4490", "+4491", "44 92", "4" * 33], actor=staff(cast.a))
    messages = error.value.message_dict["prefixes"]
    assert messages[:2] == ["+4491: Use digits only.", "44 92: Use digits only."]
    assert messages[2].startswith("4" * 33 + ": Ensure this value has at most 32 characters")
    assert prefixes_of(lists["a"]) == set()
    assert not AuditEntry.objects.filter(action="blocklist.entries_added").exists()


def test_a_long_list_of_bad_prefixes_is_summarised(cast, lists):
    with pytest.raises(ValidationError) as error:
        services.add_blocklist_entries(lists["a"], [f"x{n}" for n in range(50)], actor=staff(cast.a))
    messages = error.value.message_dict["prefixes"]
    assert len(messages) == services.SHOWN_ERRORS + 1
    assert messages[-1] == f"... and {50 - services.SHOWN_ERRORS} more."


def test_thousands_of_prefixes_are_inserted_in_batches(cast, lists, django_assert_max_num_queries):
    pasted = [f"3361{n:05d}" for n in range(2500)]
    with django_assert_max_num_queries(30):
        assert services.add_blocklist_entries(lists["a"], pasted, actor=staff(cast.a)) == 2500
    assert len(prefixes_of(lists["a"])) == 2500
    assert AuditEntry.objects.get(action="blocklist.entries_added").data["count"] == 2500


def test_removing_entries_ignores_absent_prefixes_and_records_what_went(cast, lists):
    a, blocklist = staff(cast.a), lists["a"]
    services.add_blocklist_entries(blocklist, ["4490", "4491", "4492"], actor=a)
    assert services.remove_blocklist_entries(blocklist, ["4491", "4490", "5555", "4490"], actor=a) == 2
    assert prefixes_of(blocklist) == {"4492"}
    audit = AuditEntry.objects.get(action="blocklist.entries_removed", object_id=str(blocklist.pk))
    assert audit.data == {"count": 2, "prefixes": ["4490", "4491"]}
    assert services.remove_blocklist_entries(blocklist, ["5555"], actor=a) == 0
    assert AuditEntry.objects.filter(action="blocklist.entries_removed").count() == 1


def test_a_reseller_attaches_its_own_lists_to_its_peer_with_an_audit_entry(cast, lists):
    peer = services.set_peer_blocklists(cast.a.customer, [lists["a"]], actor=staff(cast.a))
    assert list(peer.blocklists.all()) == [lists["a"]]
    audit = AuditEntry.objects.get(action="peer.blocklists_set", object_id=str(peer.pk))
    assert audit.data == {"before": [], "after": ["Premium"]}
    assert audit.reseller_id == cast.a.reseller.pk


@pytest.mark.parametrize("other", ["b", "global"])
def test_a_reseller_cannot_attach_another_resellers_or_the_operators_list(other, cast, lists):
    with pytest.raises(DomainError) as error:
        services.set_peer_blocklists(cast.a.customer, [lists["a"], lists[other]], actor=staff(cast.a))
    assert error.value.field == "blocklists"
    assert lists[other].name in error.value.message
    assert not cast.a.customer.blocklists.exists()
    assert not AuditEntry.objects.filter(action="peer.blocklists_set").exists()


def test_a_reseller_cannot_set_the_lists_of_another_resellers_peer(cast, lists):
    with pytest.raises(NotAllowed):
        services.set_peer_blocklists(cast.b.customer, [lists["b"]], actor=staff(cast.a))
    assert not cast.b.customer.blocklists.exists()


def test_the_operator_attaches_its_global_list_to_any_peer_but_not_another_owners_list(cast, system, lists):
    services.set_peer_blocklists(cast.a.customer, [lists["a"], lists["global"]], actor=system)
    assert set(cast.a.customer.blocklists.all()) == {lists["a"], lists["global"]}
    with pytest.raises(DomainError) as error:
        services.set_peer_blocklists(cast.a.customer, [lists["b"]], actor=system)
    assert error.value.field == "blocklists"
    with pytest.raises(DomainError):
        services.set_peer_blocklists(cast.operator_customer, [lists["a"]], actor=system)
    assert set(cast.a.customer.blocklists.all()) == {lists["a"], lists["global"]}
    assert not cast.operator_customer.blocklists.exists()


def test_the_operators_list_stays_when_reseller_staff_set_theirs(cast, system, lists):
    services.set_peer_blocklists(cast.a.customer, [lists["global"]], actor=system)
    services.set_peer_blocklists(cast.a.customer, [lists["a"]], actor=staff(cast.a))
    assert set(cast.a.customer.blocklists.all()) == {lists["a"], lists["global"]}
    services.set_peer_blocklists(cast.a.customer, [], actor=staff(cast.a))
    assert list(cast.a.customer.blocklists.all()) == [lists["global"]]
    # The operator may take it off again.
    services.set_peer_blocklists(cast.a.customer, [], actor=system)
    assert not cast.a.customer.blocklists.exists()
    audits = AuditEntry.objects.filter(action="peer.blocklists_set").order_by("pk")
    assert [(e.data["before"], e.data["after"]) for e in audits] == [
        ([], ["Fraud ranges"]),
        (["Fraud ranges"], ["Fraud ranges", "Premium"]),
        (["Fraud ranges", "Premium"], ["Fraud ranges"]),
        (["Fraud ranges"], []),
    ]
