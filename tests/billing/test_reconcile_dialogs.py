"""Issue 13: reservations no dialog holds are released, from recorded MI replies (tests/engines/replies)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing import services as billing
from apps.billing import tasks
from apps.billing.models import Account, Reservation
from apps.billing.services import reconcile, reservations
from apps.billing.services.reservations import Hold
from apps.rates.tariffs import Tariff
from apps.tenancy.scope import Scope
from engines.opensips import MIClient, MIUnavailable
from tests.engines import NO_SUCH_DIALOG, RecordedMI
from tests.engines.replies import recorded
from tests.factories import NodeFactory, make_peer

LISTED = recorded("dlg_list")["result"]["Dialogs"][0]  # the recorded live call: rec-call-1@test
ENDED = recorded("dlg_list_ended")["result"]["Dialogs"][0]  # the same call, state 5 (ended)


@pytest.fixture
def mi():
    with RecordedMI() as server:
        yield server


@pytest.fixture
def caller(db):
    peer = make_peer("Caller")
    billing.post_payment(peer.account, actor=Scope.system(), amount=Decimal("1000.00"))
    return peer


def reserve(peer, node, call_id: str, *, age: timedelta) -> int:
    hold = Hold(
        account_id=peer.account.pk,
        customer_id=peer.pk,
        call_id=call_id,
        tariff=Tariff(Decimal("0.60")),
        ceiling=7200,
        grace=120,
        node_id=node.pk,
    )
    return reservations.reserve(hold, now=timezone.now() - age).reservation_id


def opensips_with(mi: RecordedMI, by_call_id: dict[str, dict]) -> MIClient:
    def dlg_list(params: dict) -> dict:
        if "callid" in params:  # asked for one call
            dialog = by_call_id.get(params["callid"])
            return NO_SUCH_DIALOG if dialog is None else {"result": {"Dialog": dialog}}
        return {"result": {"count": 1, **recorded("dlg_list")["result"]}}

    mi.replies["dlg_list"] = dlg_list
    return MIClient(mi.url)


def test_reservations_of_calls_opensips_no_longer_holds_are_released(mi, caller):
    node, other = NodeFactory(name="node1"), NodeFactory(name="node2")
    old = timedelta(minutes=10)
    ids = {
        "live": reserve(caller, node, "rec-call-1@test", age=old),
        "gone": reserve(caller, node, "gone@pbx", age=old),
        "ended": reserve(caller, node, "ended@pbx", age=old),
        # The paged list missed it (a call ending between two pages shifts the rest down).
        "missed": reserve(caller, node, "missed@pbx", age=old),
        "young": reserve(caller, node, "young@pbx", age=timedelta(seconds=30)),
        "elsewhere": reserve(caller, other, "elsewhere@pbx", age=old),
    }
    client = opensips_with(mi, {"missed@pbx": {**LISTED, "callid": "missed@pbx"}, "ended@pbx": ENDED})

    assert reconcile.release_without_dialog(node, client) == 2
    assert reconcile.release_without_dialog(node, client) == 0

    active = set(Reservation.objects.active().values_list("pk", flat=True))
    assert active == {ids["live"], ids["missed"], ids["young"], ids["elsewhere"]}
    expired = Reservation.objects.get(pk=ids["gone"])
    assert expired.outcome == Reservation.Outcome.EXPIRED
    account = Account.objects.get(pk=caller.account.pk)
    kept = Reservation.objects.active().values_list("amount", flat=True)
    assert account.reserved == sum(kept, Decimal(0))
    # Only the calls missing from the list were asked for one by one, on each sweep.
    asked = [params["callid"] for params in mi.calls("dlg_list") if "callid" in params]
    assert asked == ["gone@pbx", "ended@pbx", "missed@pbx", "missed@pbx"]


def test_nothing_is_released_when_opensips_does_not_answer(caller):
    node = NodeFactory(name="node1")
    reserve(caller, node, "gone@pbx", age=timedelta(minutes=10))
    with pytest.raises(MIUnavailable):
        reconcile.release_without_dialog(node, MIClient("http://127.0.0.1:9/mi", timeout=0.5))
    assert Reservation.objects.active().count() == 1


def test_the_task_reconciles_this_node_and_survives_an_opensips_that_does_not_answer(mi, caller, settings):
    node = NodeFactory(name="node1", management_address="127.0.0.1")
    settings.NODE_NAME = node.name
    reserve(caller, node, "gone@pbx", age=timedelta(minutes=10))
    settings.OPENSIPS_MI_URL = "http://{address}:9/mi"  # nothing listens there
    settings.OPENSIPS_MI_TIMEOUT = 0.5
    assert tasks.release_without_dialog() == 0
    assert Reservation.objects.active().count() == 1

    opensips_with(mi, {})
    settings.OPENSIPS_MI_URL = mi.template
    assert tasks.release_without_dialog() == 1
    assert Reservation.objects.active().count() == 0


def test_the_task_leaves_a_node_without_opensips_alone(mi, caller, settings):
    from apps.cluster.models import NodeStatus

    node = NodeFactory(name="node1", management_address="127.0.0.1")
    settings.NODE_NAME = node.name
    NodeStatus.objects.create(node=node, reported_at=timezone.now(), opensips_installed=False)
    reserve(caller, node, "gone@pbx", age=timedelta(minutes=10))
    opensips_with(mi, {})
    settings.OPENSIPS_MI_URL = mi.template

    assert tasks.release_without_dialog() == 0
    assert mi.calls("dlg_list") == []  # never asked: there is nobody to ask
    assert Reservation.objects.active().count() == 1
