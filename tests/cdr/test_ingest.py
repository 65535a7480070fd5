"""OpenSIPS's acc and missed_calls rows become CDRs once each, and rating takes them."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone

from apps.billing.services import rating
from apps.cdr import ingest
from apps.cdr.models import Cdr
from apps.opensips.models import Acc, MissedCall
from apps.routing.models import QualityStat
from apps.routing.quality import refresh_quality_stats
from tests.factories import NodeFactory
from tests.switching import MOBILE

# An hour ago: the world's prices start a day before now, so the call is priced on any date.
ANSWER = timezone.now().replace(microsecond=0) - timedelta(hours=1)


def our_columns(world, gateway="Alpha", **fields):
    gw = world.gateways[gateway]
    values = {
        "method": "INVITE",
        "callid": "call-1@pbx",
        "from_tag": "ft1",
        "to_tag": "tt1",
        "peer_id": world.customer.pk,
        "node": world.node.name,
        "reservation_id": None,
        "supplier_id": gw.peer_id,
        "gateway_id": gw.pk,
        "source_ip": "192.0.2.10",
        "caller": "441234567890",
        "callee": MOBILE,
        "callee_out": "00" + MOBILE,
        "destination": "Germany Mobile",
    }
    return values | fields


def test_an_answered_call_becomes_one_unrated_cdr_that_rating_charges(world):
    Acc.objects.create(
        **our_columns(world),
        sip_code="200",
        sip_reason="OK",
        time=ANSWER,
        setuptime=3,
        created=ANSWER - timedelta(seconds=3),
        duration=62,
        ms_duration=61_250,
    )
    result = ingest.ingest_batch()
    assert (result.calls, result.attempts, result.errors) == (1, 0, 0)
    assert not Acc.objects.exists()
    cdr = Cdr.objects.get()
    assert (cdr.call_id, cdr.from_tag, cdr.to_tag, cdr.sip_code, cdr.sip_reason) == (
        "call-1@pbx",
        "ft1",
        "tt1",
        200,
        "OK",
    )
    assert (cdr.node, cdr.customer, cdr.supplier, cdr.gateway) == (
        world.node,
        world.customer,
        world.suppliers["Alpha"],
        world.gateways["Alpha"],
    )
    assert (cdr.source_ip, cdr.caller, cdr.callee, cdr.callee_out, cdr.destination) == (
        "192.0.2.10",
        "441234567890",
        MOBILE,
        "00" + MOBILE,
        "Germany Mobile",
    )
    assert (cdr.created_at, cdr.answered_at, cdr.ended_at, cdr.duration_ms) == (
        ANSWER - timedelta(seconds=3),
        ANSWER,
        ANSWER + timedelta(milliseconds=61_250),
        61_250,
    )
    assert cdr.rating_state == Cdr.RatingState.UNRATED
    cdr.full_clean()
    rated = rating.rate_batch()
    assert (rated.rated, rated.errors) == (1, 0)
    cdr.refresh_from_db()
    assert cdr.sell_cost > 0 and cdr.buy_cost > 0


def test_a_failed_call_after_failover_is_one_customer_cdr_and_one_attempt_per_branch(world):
    common = {"time": ANSWER, "setuptime": 0, "created": ANSWER - timedelta(seconds=4)}
    MissedCall.objects.create(
        **our_columns(world, "Alpha", to_tag=None), sip_code="503", sip_reason="Busy", **common
    )
    MissedCall.objects.create(
        **our_columns(world, "Bravo", to_tag="b2"), sip_code="486", sip_reason="Busy Here", **common
    )
    Acc.objects.create(
        **our_columns(world, "Bravo", to_tag=None), sip_code="486", sip_reason="Busy Here", **common
    )
    result = ingest.ingest_batch()
    assert (result.calls, result.attempts, result.errors) == (1, 2, 0)
    assert not Acc.objects.exists() and not MissedCall.objects.exists()
    call = Cdr.objects.get(customer=world.customer)
    assert (call.sip_code, call.to_tag, call.supplier, call.gateway, call.answered_at) == (
        486,
        "",
        None,
        None,
        None,
    )
    assert (call.created_at, call.ended_at, call.rating_state) == (
        ANSWER - timedelta(seconds=4),
        ANSWER,
        Cdr.RatingState.UNRATED,
    )
    attempts = Cdr.objects.filter(customer=None).order_by("sip_code")
    assert [
        (a.sip_code, a.supplier.name, a.gateway_id, a.rating_state, a.sell_cost, a.buy_cost) for a in attempts
    ] == [
        (486, "Bravo", world.gateways["Bravo"].pk, "rated", 0, 0),
        (503, "Alpha", world.gateways["Alpha"].pk, "rated", 0, 0),
    ]
    # The rater takes the customer's CDR only: charged nothing, attempts untouched.
    rated = rating.rate_batch()
    assert (rated.selected, rated.charges) == (1, 0)
    # The customer's CDR list (scoped by Cdr.customer) shows the call once.
    assert Cdr.objects.filter(customer=world.customer).count() == 1


def test_an_answer_after_failover_counts_both_attempts_for_quality(world):
    MissedCall.objects.create(
        **our_columns(world, "Alpha"), sip_code="503", sip_reason="Unavailable", time=ANSWER, setuptime=0
    )
    Acc.objects.create(
        **our_columns(world, "Alpha", to_tag="t2"),
        sip_code="200",
        sip_reason="OK",
        time=ANSWER,
        setuptime=2,
        ms_duration=30_000,
        duration=30,
    )
    ingest.ingest_all()
    assert Cdr.objects.count() == 2
    refresh_quality_stats(now=ANSWER + timedelta(minutes=1))
    stat = QualityStat.objects.get(supplier=world.suppliers["Alpha"], destination="Germany Mobile")
    assert (stat.attempts, stat.answered, stat.answered_seconds) == (2, 1, 30)


def test_a_row_that_cannot_be_mapped_is_kept_as_a_cdr_with_the_reason(world):
    Acc.objects.create(**our_columns(world, peer_id=987654), sip_code="2x0", time=ANSWER, ms_duration=1000)
    MissedCall.objects.create(**our_columns(world, supplier_id=424242), sip_code="503", time=ANSWER)
    result = ingest.ingest_batch()
    assert (result.calls, result.attempts, result.errors) == (1, 1, 2)
    assert not Acc.objects.exists() and not MissedCall.objects.exists()
    errors = dict(Cdr.objects.filter(rating_state="error").values_list("source_ref", "rating_error"))
    [call_error] = [text for ref, text in errors.items() if ref.startswith("acc:")]
    assert "SIP code '2x0' is not one" in call_error and "unknown customer peer 987654" in call_error
    [attempt_error] = [text for ref, text in errors.items() if ref.startswith("missed:")]
    assert "unknown supplier peer 424242" in attempt_error
    assert rating.rate_batch().selected == 0  # errors wait for an operator, not the rater


def test_a_row_imported_before_is_only_deleted(world):
    row = Acc.objects.create(**our_columns(world), sip_code="200", time=ANSWER, ms_duration=5000)
    ingest.ingest_batch()
    Acc.objects.create(id=row.pk, **our_columns(world), sip_code="200", time=ANSWER, ms_duration=5000)
    result = ingest.ingest_batch()
    assert (result.calls, result.replayed) == (0, 1)
    assert Cdr.objects.count() == 1 and not Acc.objects.exists()


def test_a_node_imports_its_own_rows_and_those_of_dead_nodes(world, settings):
    from django.utils import timezone

    from apps.nodes.models import Node
    from tests.factories import NodeFactory

    alive = NodeFactory(name="node-alive")
    NodeFactory(name="node-dead")
    Node.objects.filter(pk=alive.pk).update(last_heartbeat=timezone.now())
    for n, node in enumerate((world.node.name, "node-alive", "node-dead", "")):
        Acc.objects.create(**our_columns(world, node=node, callid=f"c{n}"), sip_code="200", time=ANSWER)
    ingest.ingest_all(node=world.node.name)
    assert list(Acc.objects.values_list("node", flat=True)) == ["node-alive"]
    call_command("ingest_cdrs", "--all-nodes")
    assert not Acc.objects.exists() and Cdr.objects.count() == 4


def test_a_supplier_gateway_id_of_another_supplier_is_not_trusted(world):
    Acc.objects.create(
        **our_columns(world, "Alpha", gateway_id=world.gateways["Bravo"].pk), sip_code="200", time=ANSWER
    )
    ingest.ingest_batch()
    cdr = Cdr.objects.get()
    assert (cdr.supplier, cdr.gateway) == (world.suppliers["Alpha"], None)


@pytest.mark.parametrize("code", ["408", "487"])
def test_unanswered_rows_have_no_duration_even_if_opensips_wrote_one(world, code):
    Acc.objects.create(**our_columns(world), sip_code=code, time=ANSWER, ms_duration=1234)
    ingest.ingest_batch()
    cdr = Cdr.objects.get()
    assert (cdr.answered_at, cdr.duration_ms, cdr.ended_at) == (None, 0, ANSWER)
    cdr.full_clean()


def test_the_billing_loop_imports_this_nodes_rows_and_rates_them(world, settings, monkeypatch):
    from apps.billing import tasks

    settings.NODE_NAME = world.node.name
    monkeypatch.setattr(tasks, "IDLE_SLEEP", 0)
    monkeypatch.setattr("apps.billing.services.online.cut_overruns", lambda: None)
    other = NodeFactory(name="node9", last_heartbeat=timezone.now())  # alive: its rows are its own
    Acc.objects.create(**our_columns(world), sip_code="200", time=ANSWER, ms_duration=1000)
    Acc.objects.create(**our_columns(world, node=other.name), sip_code="200", time=ANSWER, ms_duration=1000)
    summary = tasks.billing_loop(seconds=0.05)
    assert summary["imported"] == 1
    assert list(Acc.objects.values_list("node", flat=True)) == [other.name]
    assert Cdr.objects.get().rating_state != Cdr.RatingState.UNRATED


def test_a_rejection_without_a_supplier_is_the_calls_cdr_only(world):
    # OpenSIPS writes missed_calls too when the script rejects the call itself (no branch).
    for model in (Acc, MissedCall):
        model.objects.create(
            **our_columns(world, supplier_id=None, gateway_id=None, to_tag=None),
            sip_code="486",
            sip_reason="Too many calls",
            time=ANSWER,
        )
    result = ingest.ingest_batch()
    assert (result.calls, result.attempts, result.unrouted) == (1, 0, 1)
    assert not MissedCall.objects.exists()
    assert list(Cdr.objects.values_list("customer", "sip_code")) == [(world.customer.pk, 486)]


def acc(world, **fields) -> Acc:
    return Acc.objects.create(
        **our_columns(world, **fields), sip_code="200", sip_reason="OK", time=ANSWER, ms_duration=30_000
    )


def conflict() -> OperationalError:
    return OperationalError(1213, "Deadlock found when trying to get lock; try restarting transaction")


def test_a_backlog_import_goes_on_after_a_batch_that_gave_up_on_write_conflicts(world, monkeypatch):
    # Found by the MariaDB suite under load: two `ingest_cdrs` started together kept
    # colliding on the same rows, one batch outlasted its retries, and the command died
    # with the deadlock (tests/cdr/test_ingest_race.py). Its next round would have
    # imported the batch: the loop takes it again, as the rater's does.
    for i in range(5):
        acc(world, callid=f"backlog-{i}")
    real, failures = ingest.ingest_batch, iter([conflict(), conflict()])
    monkeypatch.setattr(ingest, "CONFLICT_PAUSE", 0)

    def flaky(**kwargs):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(**kwargs)

    monkeypatch.setattr(ingest, "ingest_batch", flaky)

    result = ingest.ingest_all(limit=2)

    assert result.calls == 5
    assert Cdr.objects.filter(call_id__startswith="backlog-").count() == 5


def test_a_backlog_import_that_keeps_losing_stops_with_a_clear_error(world, monkeypatch):
    acc(world, callid="stuck-1")
    monkeypatch.setattr(ingest, "CONFLICT_PAUSE", 0)

    def always(**kwargs):
        raise conflict()

    monkeypatch.setattr(ingest, "ingest_batch", always)

    with pytest.raises(ingest.IngestStalled, match="10 batches in a row"):
        ingest.ingest_all()
