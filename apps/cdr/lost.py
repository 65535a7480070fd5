"""Calls whose dialog was lost: an estimated CDR instead of nothing.

Each node's OpenSIPS keeps its dialogs in its own table (apps.opensips.dialogs) and a restart
loses none. A dialog can still be lost for good: a node that dies and does not come back,
or an OpenSIPS killed before it wrote the dialog. Its reservation then meets no CDR and
expires (or the node's sweep finds no dialog for it). If the node's table shows the call
answered, the call happened and is billed: a CDR flagged `estimated`, answered when the
table says, ended at the earlier of its granted maximum and the last sign of life of its
node (its heartbeat, or now for a node that is up), rated like any other from what call
control decided. The table's row is deleted with it, so that an OpenSIPS that comes back
does not end the call a second time and write a second CDR.

A call its node never wrote down as answered is not billed: nothing says it was.
"""

import logging
from datetime import UTC, datetime, timedelta

from django.db import DatabaseError, IntegrityError, connection, transaction

from apps.billing.models import Reservation
from apps.cdr.models import Cdr
from apps.nodes.models import Node
from apps.opensips import dialogs

logger = logging.getLogger(__name__)

# OpenSIPS's dialog states (dialog/dlg_hash.h): 3 answered, not yet ACKed; 4 confirmed.
ANSWERED_STATES = (3, 4)


def answered_at(node_id: int, call_id: str) -> datetime | None:
    """When the node's dialog table says `call_id` was answered, or None."""
    if connection.vendor != "mysql":
        return None  # OpenSIPS keeps its tables on MariaDB only
    table = connection.ops.quote_name(dialogs.table_name(node_id))
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT start_time, state FROM {table} WHERE callid = %s",  # noqa: S608 - our table name
                [call_id],
            )
            rows = cursor.fetchall()
    except DatabaseError:  # the node has no table (never rendered): nothing recorded
        logger.debug("no dialog table for node %s", node_id, exc_info=True)
        return None
    starts = [start for start, state in rows if state in ANSWERED_STATES and start]
    return datetime.fromtimestamp(min(starts), tz=UTC) if starts else None


def estimate(reservation: Reservation, *, now: datetime) -> Cdr | None:
    """Write the estimated CDR of `reservation`'s lost call if its node recorded an answer.

    Once per reservation (its `source_ref`); None when nothing says the call was answered.
    """
    if reservation.node_id is None:
        return None
    answer = answered_at(reservation.node_id, reservation.call_id)
    if answer is None:
        return None
    node = Node.objects.filter(pk=reservation.node_id).first()
    alive = node.last_heartbeat if node is not None and node.last_heartbeat else now
    end = max(answer, min(answer + timedelta(seconds=reservation.max_duration), alive, now))
    cdr = Cdr(
        call_id=reservation.call_id,
        node_id=reservation.node_id,
        customer_id=reservation.customer_id,
        supplier_id=reservation.supplier_id,
        callee=reservation.callee or "",
        callee_out=reservation.callee or "",
        destination=reservation.destination,
        created_at=min(reservation.created_at, answer),
        answered_at=answer,
        ended_at=end,
        duration_ms=int((end - answer).total_seconds() * 1000),
        sip_code=200,
        sip_reason="OK (estimated: dialog lost)",
        estimated=True,
        source_ref=f"lost:{reservation.pk}",
    )
    try:
        with transaction.atomic():
            cdr.save(force_insert=True)
    except IntegrityError:
        return None  # estimated already (another node's expiry, a retry)
    table = connection.ops.quote_name(dialogs.table_name(reservation.node_id))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE callid = %s", [reservation.call_id])  # noqa: S608
    logger.warning(
        "call %s of node %s lost its dialog: estimated CDR of %s s",
        reservation.call_id,
        reservation.node_id,
        cdr.duration_ms // 1000,
    )
    return cdr
