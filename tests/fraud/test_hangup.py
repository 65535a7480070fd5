"""Ending a suspended customer's live calls: each on its own node's OpenSIPS, over MI, with
retries while an engine cannot be reached, and an outcome for every call.

The nodes' MI is a server on loopback answering with OpenSIPS's recorded replies
(tests/engines).
"""

from datetime import timedelta
from decimal import Decimal

import pytest

from apps.audit.models import AuditEntry
from apps.billing.models import Reservation
from apps.fraud import hangup
from apps.peers.models import Peer
from tests.engines import DIALOG_NOT_FOUND, OPERATION_FAILED, Raw
from tests.factories import NodeFactory, make_peer


@pytest.fixture
def pbx(db) -> Peer:
    return make_peer("PBX")


def live_call(customer: Peer, call_id: str, *, node, at, released=False) -> Reservation:
    return Reservation.objects.create(
        account=customer.account,
        customer=customer,
        node=node,
        call_id=call_id,
        amount=Decimal("1.00"),
        max_duration=600,
        created_at=at,
        expires_at=at + timedelta(minutes=12),
        released_at=at if released else None,
    )


def results() -> dict[str, str]:
    return dict(Reservation.objects.filter(cut_at__isnull=False).values_list("call_id", "cut_result"))


def test_every_live_call_is_ended_and_recorded_with_what_the_engine_said(mi, node, pbx, now):
    for name in ("up", "over", "stuck"):
        live_call(pbx, f"{name}@pbx", node=node, at=now - timedelta(seconds=30))
    live_call(pbx, "done@pbx", node=node, at=now - timedelta(minutes=5), released=True)
    other = make_peer("Other")
    live_call(other, "theirs@pbx", node=node, at=now)
    mi.replies["dlg_end_dlg"] = lambda params: {
        "over@pbx": DIALOG_NOT_FOUND,
        "stuck@pbx": OPERATION_FAILED,
    }.get(params["dialog_id"], {"result": "OK"})

    report = hangup.end_live_calls(pbx.pk, now=now)

    assert (report.ended, report.gone, report.failed, report.left) == (1, 1, 1, 0)
    assert results() == {
        "up@pbx": "ended",
        "over@pbx": "gone",
        "stuck@pbx": "error: MI dlg_end_dlg: 500 Operation failed",
    }
    assert report.summary().startswith("Live calls: 1 ended, 1 already over, 1 refused, 0 left")
    assert "stuck@pbx on node1: MI dlg_end_dlg: 500 Operation failed" in report.summary()
    assert AuditEntry.objects.filter(action="reservation.cut").count() == 3
    # Asked once each; nothing asked again on the next run.
    assert len(mi.calls("dlg_end_dlg")) == 3
    assert hangup.end_live_calls(pbx.pk, now=now).total == 0


def test_an_engine_that_fails_once_is_asked_again(mi, node, pbx, now):
    live_call(pbx, "up@pbx", node=node, at=now)
    answers = iter([Raw(503), {"result": "OK"}])
    mi.replies["dlg_end_dlg"] = lambda params: next(answers)

    report = hangup.end_live_calls(pbx.pk, now=now)

    assert report.ended == 1 and len(mi.calls("dlg_end_dlg")) == 2
    assert results() == {"up@pbx": "ended"}


def test_calls_on_an_unreachable_node_are_left_for_the_next_round_and_said_so(mi, node, pbx, now, caplog):
    down = NodeFactory(name="node2", management_address="127.0.0.2")  # nothing listens there
    live_call(pbx, "a@pbx", node=down, at=now - timedelta(seconds=2))
    live_call(pbx, "b@pbx", node=down, at=now - timedelta(seconds=1))
    live_call(pbx, "c@pbx", node=node, at=now)
    live_call(pbx, "lost@pbx", node=None, at=now)

    report = hangup.end_live_calls(pbx.pk, now=now)

    assert (report.ended, report.left) == (1, 3)
    assert "node node2 unreachable" in report.summary() and "lost@pbx: no node recorded" in report.summary()
    assert "node2 unreachable" in caplog.text
    # node2 was tried (three times) for its first call only; its calls are given back.
    assert results() == {"c@pbx": "ended"}
    assert Reservation.objects.filter(call_id__in=["a@pbx", "b@pbx"], cut_at__isnull=True).count() == 2
