"""update_rows writes many rows in one statement and stores what it is given, exactly."""

from decimal import Decimal

import pytest

from apps.billing.models import Account
from apps.core.db import update_rows
from tests.factories import make_peer


@pytest.mark.parametrize(
    ("written", "read"),
    [
        (5, Decimal("5")),
        ("2.5", Decimal("2.5")),
        (Decimal("9999999999.999999"), Decimal("9999999999.999999")),
        (Decimal("-0.000001"), Decimal("-0.000001")),
    ],
)
def test_money_reads_back_as_written_whatever_python_type_carried_it(db, written, read):
    first, second = (make_peer(name).account for name in ("First", "Second"))
    update_rows(Account, ["credit_limit"], [(first.pk, written), (second.pk, Decimal("1"))])
    limits = dict(Account.objects.values_list("pk", "credit_limit"))
    assert (limits[first.pk], limits[second.pk]) == (read, Decimal("1"))


def test_same_sets_one_value_on_every_row_and_leaves_others_alone(db):
    first, second, third = (make_peer(name).account for name in ("First", "Second", "Third"))
    update_rows(Account, ["credit_limit"], [(first.pk, 7), (second.pk, 8)], low_balance_threshold=3)
    rows = {
        pk: (limit, threshold)
        for pk, limit, threshold in Account.objects.values_list("pk", "credit_limit", "low_balance_threshold")
    }
    assert rows[first.pk] == (Decimal("7"), Decimal("3"))
    assert rows[second.pk] == (Decimal("8"), Decimal("3"))
    assert rows[third.pk][1] is None
