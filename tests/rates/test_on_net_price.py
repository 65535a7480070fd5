"""A sell list's on-net price: set by its owner through the table services, shown in the
admin and the API."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from apps.rates import services as rate_services
from apps.rates.models import RateTable
from apps.tenancy.scope import Scope
from tests.admin.conftest import admin_url


def set_on_net_price(table: RateTable, price: str) -> None:
    RateTable.objects.filter(pk=table.pk).update(on_net_price=Decimal(price))


def test_the_owner_sets_the_on_net_price_and_a_negative_one_is_refused(cast):
    table = cast.a.sell_table
    rate_services.update_rate_table(
        table, actor=Scope.of_user(cast.a.staff), changes={"on_net_price": Decimal("0.0040")}
    )
    assert RateTable.objects.get(pk=table.pk).on_net_price == Decimal("0.0040")
    with pytest.raises(ValidationError) as refused:
        rate_services.update_rate_table(
            table, actor=Scope.of_user(cast.a.staff), changes={"on_net_price": Decimal("-1")}
        )
    assert "on_net_price" in refused.value.message_dict


def test_the_api_shows_the_on_net_price(api, cast):
    set_on_net_price(cast.a.sell_table, "0.004")
    row = api(cast.a.staff_key).get(f"/api/v1/rate-tables/{cast.a.sell_table.pk}/").json()
    assert row["on_net_price"] == "0.004000"


def test_the_admin_shows_the_on_net_price(cast, login):
    set_on_net_price(cast.a.sell_table, "0.004")
    client = login(cast.a.staff)
    assert "0.004" in client.get(admin_url(RateTable, "changelist")).content.decode()
    assert "0.004" in client.get(admin_url(cast.a.sell_table)).content.decode()
