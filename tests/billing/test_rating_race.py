"""Two rating processes started together on the same unrated CDRs charge every call once.

Real processes (`manage.py rate_cdrs`), each with its own connection to the test
database, committing for real: what two nodes' workers look like to one server. The
Galera version (certification instead of row locks) is in the cluster tests.
"""

import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from apps.billing import services as billing
from apps.billing.models import Account, LedgerEntry
from apps.cdr.models import Cdr
from tests.switching import BERLIN, MOBILE

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
CALLS = 1200


def database_url() -> str:
    db = connection.settings_dict
    scheme = {"mysql": "mysql", "postgresql": "postgres"}[connection.vendor]
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return f"{scheme}://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT']}/{db['NAME']}"


def test_two_raters_started_together_post_every_charge_once(world, tmp_path):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers in one file; this race needs a server database")
    customers = [world.customer] + [world.add_customer(f"Customer {i}", balance="50.00") for i in range(4)]
    start = timezone.now() - timedelta(hours=1)
    Cdr.objects.bulk_create(
        Cdr(
            call_id=f"race-{i}@test",
            node=world.node,
            customer=customers[i % len(customers)],
            supplier=world.suppliers["Alpha" if i % 3 else "Charlie"],
            callee=MOBILE if i % 2 else BERLIN,
            created_at=start + timedelta(seconds=i),
            answered_at=start + timedelta(seconds=i) if i % 7 else None,
            ended_at=start + timedelta(seconds=i + 30),
            duration_ms=(1000 + 137 * i) if i % 7 else 0,
            sip_code=200 if i % 7 else 487,
        )
        for i in range(CALLS)
    )
    world.snapshot()  # the indexes on disk, for the raters to map
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "PREFIX_INDEX_DIR": str(settings.PREFIX_INDEX_DIR),
        "SMARTSWITCH_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "smartswitch.settings",
    }
    command = [sys.executable, "manage.py", "rate_cdrs", "--batch", "40"]
    raters = [
        subprocess.Popen(  # noqa: S603 - our own manage.py
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [rater.communicate(timeout=300) for rater in raters]

    assert [rater.returncode for rater in raters] == [0, 0], outputs
    rated = [int(out.split(" rated")[0]) for out, _ in outputs]
    assert sum(rated) == CALLS, outputs
    assert not Cdr.objects.exclude(rating_state=Cdr.RatingState.RATED).exists()
    answered = Cdr.objects.filter(duration_ms__gt=0)
    charges = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE)
    # One charge per answered call and side, never two.
    assert charges.count() == 2 * answered.count()
    assert not charges.values("account", "reference").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert (
        charges.filter(account__peer__in=customers).aggregate(s=Sum("amount"))["s"]
        == -answered.aggregate(s=Sum("sell_cost"))["s"]
    )
    assert billing.ledger_differences() == []
    spent = sum(
        (Decimal("10.00") if peer == world.customer else Decimal("50.00"))
        - Account.objects.get(peer=peer).balance
        for peer in customers
    )
    assert spent == answered.aggregate(s=Sum("sell_cost"))["s"] > 0
