"""Two importers started together on the same acc rows make one CDR per row.

Real processes (`manage.py ingest_cdrs`), each with its own connection to the test
database, committing for real: two nodes' workers as one server sees them.
"""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Count

from apps.cdr.models import Cdr
from apps.opensips.models import Acc, MissedCall
from tests.billing.test_rating_race import database_url

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
CALLS = 1500
ATTEMPTS = 500


def test_two_importers_started_together_import_every_row_once(world):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers in one file; this race needs a server database")
    start = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    common = {"node": world.node.name, "peer_id": world.customer.pk, "callee": "4915112345678"}
    Acc.objects.bulk_create(
        Acc(
            callid=f"race-{i}",
            sip_code="200",
            time=start + timedelta(seconds=i),
            ms_duration=1000 + i,
            **common,
        )
        for i in range(CALLS)
    )
    MissedCall.objects.bulk_create(
        MissedCall(
            callid=f"race-{i}",
            sip_code="503",
            time=start + timedelta(seconds=i),
            supplier_id=world.suppliers["Alpha"].pk,
            **common,
        )
        for i in range(ATTEMPTS)
    )
    env = {**os.environ, "DATABASE_URL": database_url(), "NODE_NAME": world.node.name}
    command = [sys.executable, "manage.py", "ingest_cdrs", "--batch", "100"]
    importers = [
        subprocess.Popen(  # noqa: S603 - our own manage.py with fixed arguments
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [importer.communicate(timeout=300) for importer in importers]
    assert [importer.returncode for importer in importers] == [0, 0], outputs
    assert not Acc.objects.exists() and not MissedCall.objects.exists()
    assert Cdr.objects.count() == CALLS + ATTEMPTS
    assert not Cdr.objects.values("source_ref").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert Cdr.objects.filter(customer=world.customer).count() == CALLS
    # Both took part (SKIP LOCKED lets each take other rows instead of waiting): printed counts.
    imported = [int(out.split("Imported ")[1].split(" ")[0]) for out, _ in outputs]
    assert sum(imported) == CALLS, outputs
