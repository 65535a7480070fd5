"""Rating prices what call control decided: the number it priced and the prices in force.

Each test runs the whole life of a call: call control authorizes it (the endpoint, as
OpenSIPS asks), OpenSIPS writes the acc row with our extra columns (the callee as it was
received, the supplier and gateway that answered, the reservation), the CDR is ingested
and the rater charges both sides. A customer's ingress rewrite and tech prefix change the
number call control prices; the CDR keeps the number as received.
"""

import json
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing.models import Account, LedgerEntry, Reservation
from apps.billing.services import rating, rerating, reservations
from apps.callcontrol.endpoint import handle
from apps.cdr import ingest
from apps.cdr.models import Cdr
from apps.opensips.models import Acc, MissedCall
from apps.peers import services as peer_services
from apps.peers.models import Peer
from apps.rates import services as rate_services
from tests.switching import BUY, CALLER, CUSTOMER_IP, FRANCE, SYSTEM, UK, rate, update_peer

CHARGE = LedgerEntry.Kind.CHARGE
# UK (44): sold at 0.0150 a minute; least cost Delta 0.0060, Charlie 0.0070, Alpha 0.0080,
# Bravo 0.0090 (tests/switching.py), every list billed per second.
SECONDS = 90


def authorize(world, callee: str, *, source_ip: str = CUSTOMER_IP, call_id: str = "call-1@pbx") -> dict:
    """Call control's answer to OpenSIPS for an INVITE to `callee` (as dialled)."""
    body = {
        "call_id": call_id,
        "node": world.node.name,
        "source_ip": source_ip,
        "source_port": 5060,
        "transport": "udp",
        "caller": CALLER,
        "callee": callee,
    }
    status, answer = handle(
        "authorize", json.dumps(body).encode(), f"Bearer {world.node.call_control_secret}"
    )
    assert (status, answer["action"]) == (200, "route"), answer
    return answer


def answered_on(answer: dict, attempt: int, received: str, *, seconds: int = SECONDS) -> None:
    """The acc (and missed_calls) rows OpenSIPS writes when route `attempt` answered.

    The routes before it failed (503). The callee column is $rU as the INVITE brought it:
    acc_common sets it before the first relay rewrites $rU for a supplier.
    """
    answer_time = timezone.now().replace(microsecond=0) + timedelta(seconds=5)
    for n, route in enumerate(answer["routes"][: attempt + 1]):
        columns = {
            "method": "INVITE",
            "callid": answer["call_id"],
            "from_tag": "ft1",
            "to_tag": f"tt{n}",
            "peer_id": answer["peer_id"],
            "node": "node1",
            "reservation_id": answer["reservation"],
            "supplier_id": route["supplier_id"],
            "gateway_id": route["gateway_id"],
            "source_ip": CUSTOMER_IP,
            "caller": CALLER,
            "callee": received,
            "callee_out": route["callee"],
            "destination": answer["destination"],
            "time": answer_time,
            "setuptime": 3,
        }
        if n < attempt:
            MissedCall.objects.create(**columns, sip_code="503", sip_reason="Service Unavailable")
        else:
            Acc.objects.create(
                **columns, sip_code="200", sip_reason="OK", duration=seconds, ms_duration=seconds * 1000
            )


def charges(peer: Peer) -> list[Decimal]:
    return list(LedgerEntry.objects.filter(account__peer=peer, kind=CHARGE).values_list("amount", flat=True))


def rate_the_call(world, answer: dict) -> Cdr:
    ingest.ingest_all()
    result = rating.rate_batch()
    cdr = Cdr.objects.get(customer_id=answer["peer_id"])
    assert (result.rated, result.errors, cdr.rating_error) == (1, 0, "")
    return cdr


def assert_charged_once_as_decided(world, cdr: Cdr, customer: Peer, answer: dict, supplier: str, buy: str):
    expected_sell = Decimal("0.0150") * SECONDS / 60  # 0.0225
    expected_buy = Decimal(buy) * SECONDS / 60
    assert (cdr.sell_cost, cdr.buy_cost) == (expected_sell, expected_buy)
    assert (cdr.billable_seconds, cdr.supplier_billable_seconds) == (SECONDS, SECONDS)
    assert charges(customer) == [-expected_sell]
    assert charges(world.suppliers[supplier]) == [-expected_buy]
    entry = LedgerEntry.objects.get(account__peer=customer, kind=CHARGE)
    assert entry.description == "Call to United Kingdom"
    held = Reservation.objects.get(pk=answer["reservation"])
    assert (held.outcome, Account.objects.get(peer=customer).reserved) == (Reservation.Outcome.RATED, 0)
    # Rating again charges nothing more.
    assert rating.rate_batch().selected == 0
    assert charges(customer) == [-expected_sell]


def test_a_call_whose_number_an_ingress_rewrite_changed_is_charged_at_the_prices_decided(world):
    peer_services.add_rewrite_rule(
        world.customer, actor=SYSTEM, field="callee", pattern="^00", replacement=""
    )
    answer = authorize(world, "00" + UK)
    assert (answer["callee"], answer["destination"]) == (UK, "United Kingdom")
    # Delta (0.0060) failed, Charlie (0.0070) answered: the buy price is Charlie's.
    assert [r["supplier_id"] for r in answer["routes"][:2]] == [
        world.suppliers["Delta"].pk,
        world.suppliers["Charlie"].pk,
    ]
    answered_on(answer, 1, "00" + UK)

    cdr = rate_the_call(world, answer)

    assert (cdr.callee, cdr.supplier) == ("00" + UK, world.suppliers["Charlie"])
    assert_charged_once_as_decided(world, cdr, world.customer, answer, "Charlie", "0.0070")


def test_a_tech_prefix_customers_call_is_charged_at_the_prices_of_the_number_without_it(world):
    techno = world.add_customer("Techno", "198.51.100.77", tech_prefix="777")
    answer = authorize(world, "777" + UK, source_ip="198.51.100.77")
    assert (answer["peer_id"], answer["callee"]) == (techno.pk, UK)
    answered_on(answer, 0, "777" + UK)

    cdr = rate_the_call(world, answer)

    assert cdr.callee == "777" + UK
    assert_charged_once_as_decided(world, cdr, techno, answer, "Delta", "0.0060")


def test_a_rating_error_put_back_after_its_reservation_expired_is_rated_as_decided(world):
    peer_services.add_rewrite_rule(
        world.customer, actor=SYSTEM, field="callee", pattern="^00", replacement=""
    )
    answer = authorize(world, "00" + UK)
    answered_on(answer, 0, "00" + UK)
    ingest.ingest_all()
    # As the rater left such calls before: an error, and the hold expired meanwhile.
    Cdr.objects.update(rating_state=Cdr.RatingState.ERROR, rating_error=f"No sell rate for 00{UK}")
    held = Reservation.objects.get(pk=answer["reservation"])
    assert reservations.expire_reservations(now=held.expires_at + timedelta(seconds=1)) == 1

    assert rating.requeue_errors() == 1  # rate_cdrs --retry-errors
    cdr = rate_the_call(world, answer)

    assert (cdr.sell_cost, cdr.buy_cost) == (Decimal("0.0225"), Decimal("0.0060") * SECONDS / 60)
    assert charges(world.customer) == [Decimal("-0.0225")]
    held.refresh_from_db()
    assert held.outcome == Reservation.Outcome.EXPIRED  # released once, by the sweep
    assert Account.objects.get(peer=world.customer).reserved == 0


def test_a_price_list_changed_after_the_call_does_not_change_its_charge_but_re_rating_does(world):
    peer_services.add_rewrite_rule(
        world.customer, actor=SYSTEM, field="callee", pattern="^00", replacement=""
    )
    answer = authorize(world, "00" + UK)
    answered_on(answer, 0, "00" + UK)
    # The list is corrected before the CDR arrives (a new row valid since yesterday).
    rate_services.add_rates(world.sell_table, [rate("44", "0.0300", "UK corrected")], actor=SYSTEM)
    world.snapshot()

    cdr = rate_the_call(world, answer)
    assert cdr.sell_cost == Decimal("0.0225")  # what call control priced and reserved for

    # Re-rating after the correction re-derives the price of the number call control priced.
    now = timezone.now()
    run = rerating.request_rerate(
        actor=SYSTEM,
        peer=world.customer,
        period_start=now - timedelta(days=1),
        period_end=now + timedelta(hours=1),
    )
    run = rerating.run(run.pk)
    assert (run.examined, run.changed) == (1, 1)
    cdr.refresh_from_db()
    assert cdr.sell_cost == Decimal("0.0450")


def test_without_a_reservation_the_rater_prices_the_number_as_received_less_the_tech_prefix(world):
    techno = world.add_customer("Techno", "198.51.100.77", tech_prefix="777")
    start = timezone.now() - timedelta(minutes=5)
    Cdr.objects.create(
        call_id="bypassed@pbx",
        customer=techno,
        supplier=world.suppliers["Alpha"],
        callee="777" + UK,
        created_at=start,
        answered_at=start,
        ended_at=start + timedelta(seconds=SECONDS),
        duration_ms=SECONDS * 1000,
        sip_code=200,
    )
    assert rating.rate_batch().rated == 1
    cdr = Cdr.objects.get()
    assert (cdr.sell_cost, cdr.buy_cost) == (Decimal("0.0225"), Decimal("0.0080") * SECONDS / 60)


def test_a_customer_moved_to_another_list_after_the_call_is_charged_as_decided(world):
    answer = authorize(world, UK)
    answered_on(answer, 0, UK)
    update_peer(world.customer, sell_rate_table=None)

    cdr = rate_the_call(world, answer)
    assert cdr.sell_cost == Decimal("0.0225")


def test_the_reservation_carries_the_number_priced_and_the_tariffs_of_every_supplier_offered(world):
    peer_services.add_rewrite_rule(
        world.customer, actor=SYSTEM, field="callee", pattern="^00", replacement=""
    )
    answer = authorize(world, "00" + UK)
    held = Reservation.objects.get(pk=answer["reservation"])
    assert (held.callee, held.prefix, held.destination) == (UK, "44", "United Kingdom")
    assert held.sell_tariff == {
        "prefix": "44",
        "price": "0.015000",
        "fee": "0.000000",
        "min": 1,
        "inc": 1,
        "free": 0,
    }
    offered = {str(route["supplier_id"]) for route in answer["routes"]}
    assert set(held.buy_tariffs) == offered
    assert {
        world.suppliers[name].pk: held.buy_tariffs[str(world.suppliers[name].pk)]["price"] for name in BUY
    } == {world.suppliers[name].pk: f"{Decimal(BUY[name]['44']):.6f}" for name in BUY}


def test_a_reservation_made_before_it_carried_prices_is_rated_from_the_lists(world):
    answer = authorize(world, UK)
    answered_on(answer, 0, UK)
    Reservation.objects.update(callee=None, sell_tariff=None, buy_tariffs=None)

    cdr = rate_the_call(world, answer)
    assert_charged_once_as_decided(world, cdr, world.customer, answer, "Delta", "0.0060")


def test_a_reused_call_id_is_priced_by_the_reservation_made_for_its_call(world):
    first = authorize(world, FRANCE)
    assert reservations.release(first["reservation"], outcome=Reservation.Outcome.FAILED)
    # A day ago: a PBX that reuses Call-IDs.
    Reservation.objects.filter(pk=first["reservation"]).update(created_at=timezone.now() - timedelta(days=1))
    second = authorize(world, UK)  # the same Call-ID, another call
    assert second["reservation"] != first["reservation"]
    answered_on(second, 0, UK)

    cdr = rate_the_call(world, second)
    assert (cdr.sell_cost, cdr.buy_cost) == (Decimal("0.0225"), Decimal("0.0060") * SECONDS / 60)


def test_rating_reads_the_reservations_of_a_batch_in_one_query(world):
    def rate_calls(count: int) -> int:
        for n in range(count):
            answer = authorize(world, UK, call_id=f"batch{count}-{n}@pbx")
            answered_on(answer, n % 2, UK)
        ingest.ingest_all()
        with CaptureQueriesContext(connection) as queries:
            assert rating.rate_batch().rated == count
        return len(queries)

    assert rate_calls(2) == rate_calls(6)


def test_the_rater_holds_the_accounts_for_one_statement_before_its_commit(world):
    """Every call of a busy customer writes its account row when it is authorized, and waits
    while the rater holds that row: the rater writes its CDRs, rollups and reservations
    first, then the accounts (charges, spending, released money) by one statement, and
    its commit follows at once (no savepoint to release, no read of what it wrote)."""
    for n in range(3):
        answered_on(authorize(world, UK, call_id=f"answered{n}@pbx"), n % 2, UK)
    failed = authorize(world, UK, call_id="failed@pbx")
    Acc.objects.create(  # the final reply of a call that failed
        method="INVITE",
        callid=failed["call_id"],
        from_tag="ft1",
        peer_id=failed["peer_id"],
        node="node1",
        reservation_id=failed["reservation"],
        source_ip=CUSTOMER_IP,
        caller=CALLER,
        callee=UK,
        time=timezone.now(),
        sip_code="486",
        sip_reason="Busy Here",
        duration=0,
        ms_duration=0,
    )
    ingest.ingest_all()

    with CaptureQueriesContext(connection) as queries:
        result = rating.rate_batch()

    assert (result.rated, result.charges, result.released) == (4, 6, 4)
    assert Account.objects.get(peer=world.customer).reserved == 0
    account = Account._meta.db_table
    statements = [query["sql"] for query in queries.captured_queries]
    locking = [
        n
        for n, sql in enumerate(statements)
        if account in sql and ("FOR UPDATE" in sql or sql.startswith("UPDATE"))
    ]
    assert len(locking) == 1
    # What follows it here is the test's own transaction: rate_batch's outermost atomic
    # block is a savepoint inside it, released where production commits.
    after = statements[locking[0] + 1 :]
    assert len(after) == 1 and after[0].startswith("RELEASE SAVEPOINT"), after
    assert any(Reservation._meta.db_table in sql for sql in statements[: locking[0]])


def test_the_reservations_of_a_batch_are_read_by_fewer_call_ids_than_mariadb_guesses_at(db):
    """Past eq_range_index_dive_limit (200) values MariaDB sizes an IN list from index
    statistics instead of the index, and for the reservations of a batch of 500 calls it
    read the whole reservation table, every batch (issue 13: 13,000 to 24,000 rows for 500
    found, growing with the table). The rater asks for fewer Call-IDs at a time."""
    rows = [(n, f"batch-{n}@pbx", 1) for n in range(450)]

    with CaptureQueriesContext(connection) as queries:
        assert rating.reservations_of(rows) == {}

    sizes = [query["sql"].count("@pbx") for query in queries.captured_queries]
    assert sum(sizes) == 450
    assert max(sizes) < 200
