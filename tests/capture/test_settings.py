"""Which calls are captured: the sampled share (CaptureSettings) and the pure decision."""

import pytest
from django.urls import reverse

from apps.capture import services
from apps.capture.models import CaptureSettings
from apps.capture.policy import sampled, wants_capture
from apps.core.errors import DomainError
from apps.tenancy.scope import Scope


def test_a_sampled_share_takes_about_that_share_and_the_same_calls_every_time():
    call_ids = [f"call-{n}@x" for n in range(10_000)]
    taken = [c for c in call_ids if sampled(c, 10)]

    assert 900 <= len(taken) <= 1100
    assert taken == [c for c in call_ids if sampled(c, 10)]
    assert not any(sampled(c, 0) for c in call_ids[:100]) and all(sampled(c, 100) for c in call_ids[:100])


def test_a_call_is_captured_when_its_customer_route_or_supplier_asks_or_it_is_sampled():
    off = {"customer_captures": False, "route_captures": False, "sample_percent": 0, "call_id": "x"}

    assert wants_capture(**off) is False
    assert wants_capture(**{**off, "customer_captures": True}) is True
    assert wants_capture(**{**off, "route_captures": True}) is True
    assert wants_capture(**off, supplier_captures=True) is True
    assert wants_capture(**{**off, "sample_percent": 100}) is True


def test_the_operator_sets_the_share_through_the_service(db):
    current = services.update_capture_settings(actor=Scope.system(), changes={"sample_percent": 25})

    assert CaptureSettings.load().sample_percent == current.sample_percent == 25


@pytest.mark.parametrize("value", [101])
def test_a_share_over_100_is_refused(db, value):
    with pytest.raises(Exception, match="between 0 and 100"):
        services.update_capture_settings(actor=Scope.system(), changes={"sample_percent": value})


def test_reseller_staff_cannot_change_it(cast):
    staff = Scope.of_user(cast.a.staff)

    with pytest.raises(DomainError):
        services.update_capture_settings(actor=staff, changes={"sample_percent": 5})


def test_the_admin_page_is_the_operators_and_saves_through_the_service(cast, login):
    url = reverse("admin:capture_capturesettings_change", args=[CaptureSettings.SINGLETON_ID])

    assert login(cast.a.staff).get(url).status_code in (302, 403, 404)
    client = login(cast.operator)
    assert client.get(reverse("admin:capture_capturesettings_changelist")).status_code == 302
    assert client.get(url).status_code == 200
    response = client.post(url, {"sample_percent": "7"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert CaptureSettings.load().sample_percent == 7
