"""An admin upload returns at once; this node's worker reads it with progress, then previews."""

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from apps.rates import tasks
from apps.rates.importing.report import ImportReport
from apps.rates.models import PriceImport, StagedRate
from apps.rates.services import activation, imports
from apps.tenancy.scope import Scope
from tests.rates.import_helpers import BAD_PRICES, corpus, deck, snapshot

ADD_URL = reverse("admin:rates_priceimport_add")
DECK = deck("44,UK,0.0060,0,30,6,0,,", "33,FR,0.01,0,30,6,0,,")
# Prices that start a month from now: "increased" and "new" against the table's current one.
LATER = (timezone.now() + timedelta(days=30)).date().isoformat()
DATED = deck(f"44,UK,0.0060,0,30,6,0,{LATER},", f"33,FR,0.01,0,30,6,0,{LATER},")


@pytest.fixture(autouse=True)
def price_import_dir(settings, tmp_path):
    settings.PRICE_IMPORT_DIR = tmp_path / "price-imports"
    return settings.PRICE_IMPORT_DIR


@pytest.fixture
def table(cast):
    table = cast.supplier.buy_rate_table
    activation.import_price_file(table, deck("44,UK,0.0050,0,30,6,0,,"), actor=Scope.system(), mode="full")
    return table


def post_upload(client, table, content: bytes, name="prices.csv", mode="full"):
    return client.post(
        ADD_URL,
        {"table": table.pk, "file": SimpleUploadedFile(name, content), "mode": mode, "skip_invalid": ""},
        follow=True,
    )


def page_of(client, price_import) -> str:
    return client.get(reverse("admin:rates_priceimport_change", args=[price_import.pk])).content.decode()


def report_lines(price_import) -> list[str]:
    """The report as printed, without what differs between two runs (source path, timings)."""
    lines = ImportReport.from_dict(price_import.report).lines()
    differs = ("Source:", "Timings:", "Rows without a date start at")
    return [line for line in lines if not line.startswith(differs)]


def test_upload_returns_at_once_with_the_reading_queued_to_this_node(
    cast, table, price_import_dir, django_capture_on_commit_callbacks, login
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_upload(login(cast.operator), table, DECK)
    price_import = PriceImport.objects.latest("created_at")
    assert price_import.state == PriceImport.State.RECEIVED
    assert price_import.node == settings.NODE_NAME
    assert price_import.file_size == len(DECK) and price_import.rows_total == 3
    assert (price_import_dir / str(price_import.pk)).read_bytes() == DECK
    assert not StagedRate.objects.exists()  # nothing was read in the request
    queued = [entry.task for entry in OrmQ.objects.filter(key=settings.NODE_NAME)]
    assert [(task["func"], task["args"]) for task in queued] == [
        ("apps.rates.tasks.read_price_import", (price_import.pk, cast.operator.pk))
    ]
    page = response.content.decode()
    assert "waiting for a worker" in page and '<meta http-equiv="refresh" content="2">' in page
    assert "Confirm and activate" not in page


def test_the_job_previews_the_upload_and_removes_the_file(client, cast, table, price_import_dir, login):
    post_upload(login(cast.operator), table, DATED)
    price_import = PriceImport.objects.latest("created_at")
    assert tasks.read_price_import(price_import.pk, cast.operator.pk) == PriceImport.State.STAGED
    price_import.refresh_from_db()
    assert price_import.state == PriceImport.State.STAGED
    assert (price_import.rows_done, price_import.rows_total, price_import.percent) == (2, 2, 100)
    assert not (price_import_dir / str(price_import.pk)).exists()
    page = page_of(client, price_import)
    assert "Changes: new 1, increased 1" in page and "Confirm and activate" in page
    assert 'http-equiv="refresh"' not in page
    # The job read it exactly as the CLI's service reads the same bytes.
    same = imports.stage_price_file(table, DATED, actor=Scope.system(), filename="prices.csv", mode="full")
    assert report_lines(price_import) == report_lines(same)


@pytest.mark.parametrize(("name", "expected"), [pair for pair in corpus() if pair[0] != "empty.csv"])
def test_a_malformed_file_gets_the_same_report_as_from_the_cli(client, cast, table, name, expected, login):
    before = snapshot(table)
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("import_prices", str(table.pk), str(BAD_PRICES / name), "--mode", "full", stdout=out)
    printed = out.getvalue().splitlines()
    post_upload(login(cast.operator), table, (BAD_PRICES / name).read_bytes(), name=name)
    price_import = PriceImport.objects.latest("created_at")
    assert tasks.read_price_import(price_import.pk, cast.operator.pk) == PriceImport.State.INVALID
    price_import.refresh_from_db()
    lines = report_lines(price_import)
    assert any(expected in line for line in lines)
    assert [line for line in lines if line in printed] == lines  # every line, word for word
    page = page_of(client, price_import)
    assert expected.replace("'", "&#x27;") in page
    assert snapshot(table) == before and not StagedRate.objects.exists()


def test_progress_is_written_while_the_file_is_read_at_most_once_a_second(cast, table, monkeypatch, login):
    content = deck(*(f"{prefix},Somewhere,0.01,0,1,1,0,," for prefix in range(4400, 4450)))
    post_upload(login(cast.operator), table, content)
    price_import = PriceImport.objects.latest("created_at")

    def progress_updates(every: float) -> list[str]:
        PriceImport.objects.filter(pk=price_import.pk).update(state=PriceImport.State.RECEIVED)
        imports.price_import_path(price_import).write_bytes(content)  # the last run deleted it
        monkeypatch.setattr(imports, "PROGRESS_EVERY_SECONDS", every)
        with CaptureQueriesContext(connection) as queries:
            imports.read_price_import(price_import, actor=Scope.system(), chunk_size=10)
        updates = [q["sql"].replace("`", '"') for q in queries if q["sql"].startswith("UPDATE")]
        # Progress alone: not the claim nor the final save, which also set the state.
        return [sql for sql in updates if '"rows_per_second"' in sql and '"state"' not in sql]

    assert len(progress_updates(0)) == 5  # after each chunk of 10 rows
    assert progress_updates(3600) == []  # a fast job: no progress row written in between
    price_import.refresh_from_db()
    assert price_import.state == PriceImport.State.STAGED and price_import.rows_done == 50


def test_the_page_shows_a_progress_bar_while_a_worker_reads(client, cast, table, login):
    post_upload(login(cast.operator), table, DECK)
    price_import = PriceImport.objects.latest("created_at")
    PriceImport.objects.filter(pk=price_import.pk).update(
        state=PriceImport.State.READING, phase="read", rows_total=200, rows_done=50, rows_per_second=125000
    )
    page = page_of(client, price_import)
    assert 'class="import-progress"' in page and "width:25%" in page
    assert "read: 25% (50 of 200 rows, 125,000 rows/s)" in page
    assert '<meta http-equiv="refresh" content="2">' in page


def test_a_failed_reading_keeps_the_file_until_the_import_is_cancelled(
    cast, table, price_import_dir, monkeypatch, login
):
    post_upload(login(cast.operator), table, DECK)
    price_import = PriceImport.objects.latest("created_at")
    path = price_import_dir / str(price_import.pk)

    def crash(*args, **kwargs):
        raise OSError("I/O error")

    monkeypatch.setattr(imports, "_read", crash)  # a crash, not anything the file says
    with pytest.raises(OSError):
        tasks.read_price_import(price_import.pk, cast.operator.pk)
    price_import.refresh_from_db()
    assert price_import.state == PriceImport.State.FAILED and path.exists()
    report = "\n".join(report_lines(price_import))
    assert "reading the file failed on node node1 (OSError)" in report
    assert str(path) not in report  # resellers read reports: no server paths
    imports.cancel_price_import(price_import, actor=Scope.system())
    assert not path.exists()


def test_a_retried_job_starts_over(cast, table, login):
    post_upload(login(cast.operator), table, DECK)
    price_import = PriceImport.objects.latest("created_at")
    # A worker died half-way: some rows staged, the import still "reading".
    imports.read_price_import(price_import, actor=Scope.system())
    PriceImport.objects.filter(pk=price_import.pk).update(state=PriceImport.State.READING)
    (settings.PRICE_IMPORT_DIR / str(price_import.pk)).write_bytes(DECK)
    assert tasks.read_price_import(price_import.pk) == PriceImport.State.STAGED
    assert StagedRate.objects.filter(price_import=price_import).count() == 2
    assert (
        tasks.read_price_import(price_import.pk)
        == "This import is previewed, waiting for confirmation; it was read already."
    )


def test_a_job_on_another_node_leaves_the_file_to_its_node(cast, table, login):
    post_upload(login(cast.operator), table, DECK)
    price_import = PriceImport.objects.latest("created_at")
    PriceImport.objects.filter(pk=price_import.pk).update(node="node9")
    assert (
        tasks.read_price_import(price_import.pk)
        == f"The file of this import is on node node9, not {settings.NODE_NAME}."
    )
    price_import.refresh_from_db()
    assert price_import.state == PriceImport.State.RECEIVED


def test_a_reseller_cannot_see_or_confirm_another_resellers_import(client, cast, login):
    post_upload(login(cast.a.staff), cast.a.sell_table, deck("44,UK,0.02,0,1,1,0,,"))
    price_import = PriceImport.objects.get(table=cast.a.sell_table)
    assert price_import.created_by == cast.a.staff
    tasks.read_price_import(price_import.pk, cast.a.staff.pk)
    price_import.refresh_from_db()
    assert price_import.state == PriceImport.State.STAGED
    assert "Confirm and activate" in page_of(client, price_import)
    login(cast.b.staff)
    url = reverse("admin:rates_priceimport_change", args=[price_import.pk])
    assert client.get(url).status_code in (302, 404)
    assert (
        client.get(reverse("admin:rates_priceimport_changelist"))
        .content.decode()
        .count(f"/{price_import.pk}/change/")
        == 0
    )
    client.post(reverse("admin:rates_priceimport_tool", args=[price_import.pk, "confirm"]), {})
    price_import.refresh_from_db()
    assert price_import.state == PriceImport.State.STAGED


def test_an_upload_waiting_for_a_worker_can_be_cancelled_and_the_job_then_does_nothing(
    cast, table, price_import_dir, login
):
    post_upload(login(cast.operator), table, DECK)
    price_import = PriceImport.objects.latest("created_at")
    assert price_import.state == PriceImport.State.RECEIVED
    imports.cancel_price_import(price_import, actor=Scope.system())
    assert not (price_import_dir / str(price_import.pk)).exists()
    tasks.read_price_import(price_import.pk, cast.operator.pk)
    price_import.refresh_from_db()
    assert price_import.state == PriceImport.State.CANCELLED
    assert not StagedRate.objects.filter(price_import=price_import).exists()
