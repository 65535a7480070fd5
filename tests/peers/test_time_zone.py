"""A peer's time zone: the clock its routing windows and time-of-week prices are read on."""

import pytest
from django.core.exceptions import ValidationError

from apps.callcontrol import snapshot as snapshots
from apps.peers import services
from apps.peers.models import Peer
from apps.tenancy.scope import Scope
from tests.conftest import PASSWORD


def test_a_new_peer_starts_on_the_installations_clock(cast, settings):
    settings.TIME_ZONE = "Europe/Lisbon"
    peer = services.create_peer(actor=Scope.system(), name="Lisbon PBX", role="customer")
    assert peer.time_zone == "Europe/Lisbon"
    assert str(peer.zone) == "Europe/Lisbon"


def test_a_reseller_sets_its_customers_time_zone(cast):
    peer = services.update_peer(
        cast.a.customer, actor=Scope.of_user(cast.a.staff), changes={"time_zone": "America/New_York"}
    )
    assert Peer.objects.get(pk=peer.pk).time_zone == "America/New_York"


@pytest.mark.parametrize("value", ["Mars/Olympus", "Europe/../etc/passwd", "/etc/localtime", "", " UTC"])
def test_a_time_zone_zoneinfo_does_not_know_is_refused(cast, value):
    with pytest.raises(ValidationError) as refused:
        services.update_peer(cast.a.customer, actor=Scope.system(), changes={"time_zone": value})
    assert "time_zone" in refused.value.message_dict
    assert Peer.objects.get(pk=cast.a.customer.pk).time_zone == "UTC"


def test_the_api_shows_and_takes_the_time_zone(api, cast):
    url = f"/api/v1/peers/{cast.a.customer.pk}/"
    assert api(cast.a.staff_key).get(url).json()["time_zone"] == "UTC"
    changed = api(cast.a.staff_key).patch(url, {"time_zone": "Asia/Tokyo"}, format="json")
    assert changed.status_code == 200 and changed.json()["time_zone"] == "Asia/Tokyo"
    refused = api(cast.a.staff_key).patch(url, {"time_zone": "Tokyo"}, format="json")
    assert refused.status_code == 400 and "time_zone" in refused.json()


def test_the_admin_form_changes_it_and_keeps_it_when_left_out(client, cast):
    client.login(username="staff_a", password=PASSWORD)
    url = f"/admin/peers/peer/{cast.a.customer.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200 and 'name="time_zone"' in page.content.decode()
    Peer.objects.filter(pk=cast.a.customer.pk).update(time_zone="Europe/Berlin")
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "time_zone"}
    data.update(_inline_management(page))
    data["blocklists"] = []
    data["notes"] = "left out: the zone stays"
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Peer.objects.get(pk=cast.a.customer.pk).notes == "left out: the zone stays"
    assert Peer.objects.get(pk=cast.a.customer.pk).time_zone == "Europe/Berlin"


def _inline_management(page) -> dict:
    data = {}
    for formset in page.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        for name, field in management.fields.items():
            data[f"{management.prefix}-{name}"] = management.initial.get(name, field.initial) or 0
    return data


def test_call_control_reads_each_peers_clock(cast):
    Peer.objects.filter(pk=cast.a.customer.pk).update(time_zone="Australia/Sydney")
    built = snapshots.build()
    assert str(built.peers[cast.a.customer.pk].zone) == "Australia/Sydney"
    assert str(built.peers[cast.b.customer.pk].zone) == "UTC"
