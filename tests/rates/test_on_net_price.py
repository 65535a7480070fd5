"""A sell list's on-net price is shown in the admin and the API."""

from decimal import Decimal

from apps.rates.models import RateTable
from tests.admin.conftest import admin_url


def set_on_net_price(table: RateTable, price: str) -> None:
    # No service sets it yet (apps.rates.services.TABLE_SETTINGS): written here as a fixture.
    RateTable.objects.filter(pk=table.pk).update(on_net_price=Decimal(price))


def test_the_api_shows_the_on_net_price(api, cast):
    set_on_net_price(cast.a.sell_table, "0.004")
    row = api(cast.a.staff_key).get(f"/api/v1/rate-tables/{cast.a.sell_table.pk}/").json()
    assert row["on_net_price"] == "0.004000"


def test_the_admin_shows_the_on_net_price(cast, login):
    set_on_net_price(cast.a.sell_table, "0.004")
    client = login(cast.a.staff)
    assert "0.004" in client.get(admin_url(RateTable, "changelist")).content.decode()
    assert "0.004" in client.get(admin_url(cast.a.sell_table)).content.decode()
