"""On MariaDB a reservation of the whole call and a release are one stored procedure each
(billing 0014): one round trip, its own transaction when called outside one."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing.models import Account, ReleaseMarker, Reservation
from apps.billing.services import reservations
from tests.billing.test_reservations import (
    FAILED,
    assert_reserved_is_the_sum_of_active_reservations,
    customer,
    hold,
)
from tests.factories import NodeFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _mariadb_only():
    if connection.vendor != "mysql":
        pytest.skip("stored procedures are MariaDB's; run with a mysql:// DATABASE_URL")


def statements(func, *args, **kwargs):
    with CaptureQueriesContext(connection) as queries:
        result = func(*args, **kwargs)
    return result, [query["sql"].split("(")[0] for query in queries.captured_queries]


def test_the_whole_call_is_held_and_released_in_one_round_trip_each():
    caller = customer(balance="10.00")
    grant, sent = statements(reservations.reserve, hold(caller, "one@pbx", ceiling=60))
    assert sent == ["CALL billing_reserve_whole_call"]
    assert (grant.seconds, grant.amount) == (60, Decimal("0.60"))
    assert not connection.in_atomic_block and connection.get_autocommit()
    # Committed by the procedure itself: another connection sees it.
    connection.close()
    assert Account.objects.get(pk=caller.account.pk).reserved == Decimal("0.60")

    released, sent = statements(reservations.release, grant.reservation_id, outcome=FAILED, call_id="one@pbx")
    assert (released, sent) == (True, ["CALL billing_release"])
    again, _ = statements(reservations.release, grant.reservation_id, outcome=FAILED)
    assert again is False
    connection.close()
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == 0


def test_a_release_naming_another_call_gives_nothing_back():
    caller = customer(balance="10.00")
    grant = reservations.reserve(hold(caller, "mine@pbx", ceiling=60))
    assert reservations.release(grant.reservation_id, outcome=FAILED, call_id="theirs@pbx") is False
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("0.60")


def test_a_whole_call_the_money_does_not_pay_is_rolled_back_then_cut_on_the_long_way():
    caller = customer(balance="0.40")  # 40 s at 0.01 a second
    grant, sent = statements(reservations.reserve, hold(caller, "short@pbx", ceiling=60))
    assert sent[0] == "CALL billing_reserve_whole_call"  # then the long way's statements
    assert (grant.seconds, grant.amount, grant.available) == (40, Decimal("0.40"), Decimal("0.40"))
    assert Reservation.objects.filter(call_id="short@pbx").count() == 1
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == Decimal("0.40")


def test_a_release_marker_refuses_the_procedure_and_nothing_is_held():
    caller = customer(balance="10.00")
    node = NodeFactory(name="proc1")
    asked = timezone.now()
    # OpenSIPS released the Call-ID after call control was asked, before the reservation.
    ReleaseMarker.objects.create(node=node, call_id="late@pbx", created_at=asked + timedelta(milliseconds=5))
    with pytest.raises(reservations.CallReleased):
        reservations.reserve(hold(caller, "late@pbx", ceiling=60, node_id=node.pk), now=asked)
    assert not Reservation.objects.exists()
    assert assert_reserved_is_the_sum_of_active_reservations(caller) == 0
