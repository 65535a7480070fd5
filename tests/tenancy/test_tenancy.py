"""Who a login or a key acts for, and what deactivating a reseller does."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from apps.audit.models import AuditEntry
from apps.core.errors import NotAllowed
from apps.peers.models import Peer
from apps.tenancy import services
from apps.tenancy.models import ApiKey
from apps.tenancy.scope import Kind, Scope


def test_a_deactivated_reseller_locks_out_its_staff_customers_and_keys(cast, system):
    services.update_reseller(cast.a.reseller, actor=system, changes={"is_active": False})
    for user in (cast.a.staff, cast.a.customer_user):
        user.refresh_from_db()
        assert Scope.of_user(user).kind is Kind.NOBODY
        assert Peer.objects.visible_to(user).count() == 0
    for token in (cast.a.staff_key, cast.a.customer_key):
        response = APIClient().get("/api/v1/peers/", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 401
    # Reseller B is untouched.
    response = APIClient().get("/api/v1/peers/", HTTP_AUTHORIZATION=f"Bearer {cast.b.staff_key}")
    assert response.status_code == 200


def test_only_the_operator_changes_resellers(cast):
    with pytest.raises(NotAllowed):
        services.update_reseller(
            cast.a.reseller, actor=Scope.of_user(cast.a.staff), changes={"is_active": False}
        )
    cast.a.reseller.refresh_from_db()
    assert cast.a.reseller.is_active


def test_the_operator_sets_a_resellers_spend_limits_audited(cast, system):
    limits = {"daily_spend_limit": Decimal("100"), "monthly_spend_limit": Decimal("2000")}
    services.update_reseller(cast.a.reseller, actor=system, changes=limits)
    cast.a.reseller.refresh_from_db()
    assert (cast.a.reseller.daily_spend_limit, cast.a.reseller.monthly_spend_limit) == (100, 2000)
    entry = AuditEntry.objects.filter(action="reseller.changed").latest("pk")
    assert set(entry.data["changes"]) == set(limits)
    with pytest.raises(NotAllowed):  # not the reseller's own to raise
        services.update_reseller(cast.a.reseller, actor=Scope.of_user(cast.a.staff), changes=limits)
    with pytest.raises(ValidationError):
        services.update_reseller(cast.a.reseller, actor=system, changes={"daily_spend_limit": Decimal(-1)})


def test_reseller_staff_see_the_keys_of_their_customers_but_not_others(cast):
    visible = set(ApiKey.objects.visible_to(cast.a.staff).values_list("name", flat=True))
    assert visible == {"A staff", "A customer"}


def test_audit_entries_about_a_reseller_are_visible_to_its_staff(cast, system):
    services.update_reseller(cast.a.reseller, actor=system, changes={"company": "Alpha Holdings"})
    actions_a = set(AuditEntry.objects.visible_to(cast.a.staff).values_list("action", flat=True))
    assert {"reseller.created", "reseller.staff_added", "reseller.changed", "apikey.created"} <= actions_a
    assert not AuditEntry.objects.visible_to(cast.b.staff).filter(object_repr__contains="Reseller A").exists()


def test_customer_keys_are_for_customers_only(cast, system):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        services.create_api_key(actor=system, name="wrong", scope=ApiKey.Scope.CUSTOMER, peer=cast.supplier)
    assert "peer" in error.value.message_dict


def test_a_customer_does_not_see_the_notes_kept_about_it(cast, system):
    from apps.peers import services as peer_services

    peer_services.update_peer(cast.a.customer, actor=system, changes={"notes": "late payer"})
    as_customer = APIClient().get(
        f"/api/v1/peers/{cast.a.customer.pk}/", HTTP_AUTHORIZATION=f"Bearer {cast.a.customer_key}"
    )
    as_reseller = APIClient().get(
        f"/api/v1/peers/{cast.a.customer.pk}/", HTTP_AUTHORIZATION=f"Bearer {cast.a.staff_key}"
    )
    assert "notes" not in as_customer.json()
    assert as_reseller.json()["notes"] == "late payer"


def test_audit_entries_follow_the_objects_owner_through_its_scoping_lookup(cast, system):
    from apps.billing import services as billing

    billing.post_payment(cast.a.customer.account, actor=system, amount=1)  # account → peer → reseller
    entry = AuditEntry.objects.filter(action="ledger.payment").latest("id")
    assert entry.reseller_id == cast.a.reseller.pk
    assert AuditEntry.objects.visible_to(cast.a.staff).filter(pk=entry.pk).exists()
    assert not AuditEntry.objects.visible_to(cast.b.staff).filter(pk=entry.pk).exists()
