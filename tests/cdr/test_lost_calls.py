"""A call whose dialog was lost for good leaves an estimated CDR (issue 14, item 4).

The node's dialog table (apps.opensips.dialogs) is a real MariaDB table here, written as
OpenSIPS writes it: when a reservation expires, or the node's sweep finds no dialog, a call
the table records as answered is billed from its answer to its node's last sign of life.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.billing.models import Reservation
from apps.billing.services import rating, reservations
from apps.cdr.models import Cdr
from apps.nodes.models import Node
from apps.opensips import dialogs
from tests.switching import BERLIN, build_world

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "mysql", reason="OpenSIPS's dialog tables live on MariaDB"),
]


@pytest.fixture(name="lost_world")
def lost_world_fixture(fresh_rate_indexes):
    world = build_world(fresh_rate_indexes)
    dialogs.ensure_table(world.node.pk)
    yield world
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {dialogs.table_name(world.node.pk)}")


def record_dialog(node_id: int, call_id: str, *, answered, state: int = 4) -> None:
    """A row as OpenSIPS's dialog module writes it (only what the estimate reads matters)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {dialogs.table_name(node_id)} (dlg_id, callid, from_uri, from_tag, to_uri, "  # noqa: S608
            "to_tag, caller_cseq, callee_cseq, caller_ping_cseq, callee_ping_cseq, caller_sock, "
            "callee_sock, state, start_time, timeout) "
            "VALUES (%s, %s, 'sip:a@x', 'f', 'sip:b@y', 't', '1', '1', 0, 0, 'udp:127.0.0.1:5060', "
            "'udp:127.0.0.1:5060', %s, %s, %s)",
            [
                abs(hash(call_id)) % 10**12,
                call_id,
                state,
                int(answered.timestamp()),
                int(answered.timestamp()) + 60,
            ],
        )


def test_an_answered_call_whose_node_died_is_billed_to_the_nodes_last_heartbeat(lost_world):
    decision = lost_world.call(BERLIN)
    held = Reservation.objects.get(pk=decision.reservation)
    answered = held.created_at + timedelta(seconds=2)
    record_dialog(lost_world.node.pk, held.call_id, answered=answered)
    # The node beat for the last time 30 s after the answer, and never came back.
    Node.objects.filter(pk=lost_world.node.pk).update(last_heartbeat=answered + timedelta(seconds=30))

    later = held.expires_at + timedelta(seconds=1)
    assert reservations.expire_reservations(now=later) == 1

    cdr = Cdr.objects.get(call_id=held.call_id)
    assert (cdr.estimated, cdr.source_ref, cdr.sip_code) == (True, f"lost:{held.pk}", 200)
    assert cdr.answered_at == answered.replace(microsecond=0)
    assert cdr.duration_ms == 30_000 + answered.microsecond // 1000
    assert (cdr.customer_id, cdr.supplier_id, cdr.node_id) == (
        held.customer_id,
        held.supplier_id,
        held.node_id,
    )
    # No returning OpenSIPS ends it again: its row is gone.
    assert dialogs_of(lost_world.node.pk, held.call_id) == 0
    rating.rate_batch()
    cdr.refresh_from_db()
    assert cdr.rating_state == Cdr.RatingState.RATED and cdr.sell_cost > 0
    # Expiring again makes no second CDR.
    reservations.expire_reservations(now=later + timedelta(minutes=1))
    assert Cdr.objects.filter(call_id=held.call_id).count() == 1


def test_an_estimate_never_runs_past_the_granted_maximum(lost_world):
    held = Reservation.objects.get(pk=lost_world.call(BERLIN).reservation)
    answered = held.created_at
    record_dialog(lost_world.node.pk, held.call_id, answered=answered)
    reservations.expire_reservations(now=held.expires_at + timedelta(hours=1))  # node never beat
    cdr = Cdr.objects.get(call_id=held.call_id)
    assert cdr.duration_ms <= held.max_duration * 1000 + 1000


@pytest.mark.parametrize("state", [1, 2, None])
def test_a_call_its_node_never_recorded_as_answered_is_not_billed(lost_world, state):
    held = Reservation.objects.get(pk=lost_world.call(BERLIN).reservation)
    if state is not None:
        record_dialog(lost_world.node.pk, held.call_id, answered=timezone.now(), state=state)
    assert reservations.expire_reservations(now=held.expires_at + timedelta(seconds=1)) == 1
    assert not Cdr.objects.filter(call_id=held.call_id).exists()


def dialogs_of(node_id: int, call_id: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {dialogs.table_name(node_id)} WHERE callid = %s", [call_id])  # noqa: S608
        return cursor.fetchone()[0]
