"""The admin flow: upload -> job reads it -> preview (the CLI's report) -> confirm; scoped."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.rates import tasks
from apps.rates.importing.report import ImportReport
from apps.rates.models import PriceImport
from apps.rates.services import activation, imports
from apps.tenancy.scope import Scope
from tests.rates.import_helpers import BAD_PRICES, corpus, deck, snapshot

ADD_URL = reverse("admin:rates_priceimport_add")


@pytest.fixture(autouse=True)
def price_import_dir(settings, tmp_path):
    settings.PRICE_IMPORT_DIR = tmp_path / "price-imports"
    return settings.PRICE_IMPORT_DIR


def upload(client, table, content: bytes, name="prices.csv", mode="full"):
    """Upload, run the reading job as this node's worker would, and show the import's page."""
    response = client.post(
        ADD_URL,
        {"table": table.pk, "file": SimpleUploadedFile(name, content), "mode": mode, "skip_invalid": ""},
        follow=True,
    )
    price_import = PriceImport.objects.filter(table=table).first()
    if price_import is None or price_import.state != PriceImport.State.RECEIVED:
        return response  # the form refused the file
    tasks.read_price_import(price_import.pk, price_import.created_by_id)
    return client.get(reverse("admin:rates_priceimport_change", args=[price_import.pk]))


@pytest.fixture
def table(cast):
    table = cast.supplier.buy_rate_table
    activation.import_price_file(table, deck("44,UK,0.0050,0,30,6,0,,"), actor=Scope.system(), mode="full")
    return table


@pytest.mark.parametrize(("name", "expected"), corpus())
def test_admin_shows_the_same_report_for_every_malformed_file(cast, table, name, expected, login):
    before = snapshot(table)
    response = upload(login(cast.operator), table, (BAD_PRICES / name).read_bytes(), name=name)
    assert response.status_code == 200
    page = response.content.decode()
    if name == "empty.csv":  # the upload form itself refuses an empty file
        assert "The submitted file is empty." in page and snapshot(table) == before
        return
    price_import = PriceImport.objects.latest("created_at")
    assert price_import.state == PriceImport.State.INVALID
    for line in ImportReport.from_dict(price_import.report).lines()[:4]:
        assert line.replace("'", "&#x27;") in page
    assert expected.replace("'", "&#x27;") in page
    assert snapshot(table) == before


def test_upload_previews_then_confirm_queues_the_activation(client, cast, table, login):
    response = upload(login(cast.operator), table, deck("44,UK,0.0060,0,30,6,0,,", "33,FR,0.01,0,30,6,0,,"))
    page = response.content.decode()
    assert "Changes: new 1, increased 1" in page and "Confirm and activate" in page
    price_import = PriceImport.objects.latest("created_at")
    assert price_import.state == PriceImport.State.STAGED
    url = reverse("admin:rates_priceimport_tool", args=[price_import.pk, "confirm"])
    client.post(url, {})
    price_import.refresh_from_db()
    assert price_import.state == PriceImport.State.QUEUED
    from apps.rates import tasks

    assert tasks.activate_price_import(price_import.pk, cast.operator.pk) == "done"
    price_import.refresh_from_db()
    assert price_import.state == PriceImport.State.DONE and price_import.percent == 100


def test_reseller_cannot_import_into_someone_elses_table(client, cast, login):
    response = upload(login(cast.a.staff), cast.b.sell_table, deck("44,UK,0.02,0,1,1,0,,"))
    assert "Select a valid choice" in response.content.decode()
    assert not PriceImport.objects.filter(table=cast.b.sell_table).exists()
    other = imports.stage_price_file(cast.b.sell_table, deck("44,UK,0.02,0,1,1,0,,"), actor=Scope.system())
    assert client.get(reverse("admin:rates_priceimport_change", args=[other.pk])).status_code in (302, 404)
