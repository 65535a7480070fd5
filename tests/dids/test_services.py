"""DIDs are written only through their services: validated, scoped, audited, announced, billed."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from apps.audit.models import AuditEntry
from apps.billing.models import LedgerEntry, RecurringFee
from apps.billing.services import fees
from apps.core.errors import DomainError, NotAllowed, OutOfRange
from apps.dids import services
from apps.dids.models import MAX_RANGE, Did, DidTarget
from apps.peers import services as peer_services
from apps.peers.models import Peer
from apps.tenancy.scope import Scope
from tests.dids.conftest import SYSTEM, add_sip_account, end_of_month, make_did, today
from tests.factories import make_peer


def fee_of(fee_id) -> RecurringFee:
    return RecurringFee.objects.get(pk=fee_id)


def charged(fee: RecurringFee) -> list[Decimal]:
    prefix = f"fee:{fee.pk}:"
    return list(
        LedgerEntry.objects.filter(account=fee.account, reference__startswith=prefix).values_list(
            "amount", flat=True
        )
    )


def target_names(did: Did) -> list[str]:
    return [str(target) for target in DidTarget.objects.filter(did=did).order_by("position")]


# --- fees -------------------------------------------------------------------------------------


def test_a_new_did_is_in_stock_and_its_supplier_charges_us_monthly_from_today(cast):
    did = make_did("442079460050", supplier_id=cast.supplier.pk, buy_monthly=Decimal("1.50"))

    assert (did.customer, did.sell_fee) == (None, None)
    fee = fee_of(did.buy_fee_id)
    assert fee.account == cast.supplier.account
    assert (fee.name, fee.amount, fee.period) == ("DID 442079460050", Decimal("1.5"), "monthly")
    assert (fee.starts_on, fee.ends_on) == (today(), None)
    assert AuditEntry.objects.filter(action="did.created", object_id=str(did.pk)).exists()


def test_assigning_a_did_starts_its_customers_monthly_fee_and_sends_calls_to_its_targets(cast):
    sip = add_sip_account(cast.a.customer, "office")
    did = make_did("442079460050", sell_monthly=Decimal("4"))

    services.assign_did(did, cast.a.customer, actor=SYSTEM, targets=[(sip, 25)])

    did.refresh_from_db()
    fee = fee_of(did.sell_fee_id)
    assert (fee.account, fee.amount, fee.starts_on, fee.ends_on) == (
        cast.a.customer.account,
        Decimal("4"),
        today(),
        None,
    )
    assert fee.name == "DID 442079460050"
    assert [(t.sip_account, t.setup_timeout) for t in did.targets.all()] == [(sip, 25)]
    assert AuditEntry.objects.filter(action="did.assigned", object_id=str(did.pk)).exists()


def test_a_did_without_a_monthly_price_has_no_fee(cast):
    did = make_did("442079460050", supplier_id=cast.supplier.pk, customer=cast.a.customer)
    assert (did.buy_fee_id, did.sell_fee_id) == (None, None)
    assert not RecurringFee.objects.exists()


def test_a_new_price_applies_from_the_next_period_and_a_charged_period_is_not_charged_again(numbers):
    fee = fee_of(numbers.a.sell_fee_id)
    fees.post_due_fees(today())
    first_charge = charged(fee)
    assert len(first_charge) == 1 and first_charge[0] < 0

    services.update_did(numbers.a, actor=SYSTEM, changes={"sell_monthly": Decimal("9")})
    fees.post_due_fees(today())

    numbers.a.refresh_from_db()
    assert numbers.a.sell_fee_id == fee.pk  # the same fee, at its new amount
    assert fee_of(fee.pk).amount == Decimal("9")
    assert charged(fee) == first_charge
    next_month = end_of_month(today()) + timedelta(days=1)
    assert [p.amount for p in fees.periods_due(fee_of(fee.pk), next_month)][-1] == Decimal("9")


def test_releasing_a_did_ends_its_fee_on_the_last_day_already_charged(numbers):
    fee = fee_of(numbers.a.sell_fee_id)
    fees.post_due_fees(today())

    did = services.release_did(numbers.a, actor=SYSTEM)

    assert (did.customer_id, did.sell_fee_id) == (None, None)
    assert did.targets.count() == 0
    assert fee_of(fee.pk).ends_on == end_of_month(today())
    assert fee_of(numbers.a.buy_fee_id).ends_on is None  # we still pay the supplier for it
    assert AuditEntry.objects.filter(action="did.released", object_id=str(did.pk)).exists()


def test_releasing_a_did_before_its_fee_was_charged_ends_the_fee_today(numbers):
    fee = fee_of(numbers.a.sell_fee_id)
    services.release_did(numbers.a, actor=SYSTEM)
    assert fee_of(fee.pk).ends_on == today()


def test_moving_a_did_to_another_customer_moves_its_fee_and_drops_the_old_targets(
    numbers, cast, second_customer_a
):
    old_fee = fee_of(numbers.a.sell_fee_id)
    desk = second_customer_a.sip_accounts.get()

    did = services.assign_did(
        numbers.a, second_customer_a, actor=Scope.of_user(cast.a.staff), targets=[(desk, None)]
    )

    assert did.customer == second_customer_a
    assert target_names(did) == [str(desk)]
    assert fee_of(old_fee.pk).ends_on == today()
    new_fee = fee_of(did.sell_fee_id)
    assert (new_fee.account, new_fee.starts_on, new_fee.ends_on) == (second_customer_a.account, today(), None)


def test_a_monthly_price_of_zero_ends_the_fee_and_a_new_price_starts_another(numbers):
    fee = fee_of(numbers.a.sell_fee_id)
    did = services.update_did(numbers.a, actor=SYSTEM, changes={"sell_monthly": Decimal("0")})
    assert did.sell_fee_id is None
    assert fee_of(fee.pk).ends_on == today()

    did = services.update_did(did, actor=SYSTEM, changes={"sell_monthly": Decimal("3")})
    assert did.sell_fee_id not in (None, fee.pk)
    assert fee_of(did.sell_fee_id).amount == Decimal("3")


def test_a_new_supplier_takes_over_the_buy_fee(numbers):
    other = make_peer("Carrier Y", role=Peer.Role.SUPPLIER)
    old_fee = fee_of(numbers.stock.buy_fee_id)

    did = services.update_did(numbers.stock, actor=SYSTEM, changes={"supplier_id": other.pk})

    assert fee_of(old_fee.pk).ends_on == today()
    assert fee_of(did.buy_fee_id).account == other.account


def test_a_new_number_renames_the_fees(numbers):
    did = services.update_did(numbers.a, actor=SYSTEM, changes={"number": "442079460009"})
    assert fee_of(did.sell_fee_id).name == fee_of(did.buy_fee_id).name == "DID 442079460009"


def test_deleting_a_did_in_stock_ends_its_supplier_fee(numbers):
    fee = fee_of(numbers.stock.buy_fee_id)
    services.delete_did(numbers.stock, actor=SYSTEM)
    assert not Did.objects.filter(pk=numbers.stock.pk).exists()
    assert fee_of(fee.pk).ends_on == today()


def test_a_did_on_a_customer_is_released_before_it_is_deleted(numbers):
    with pytest.raises(DomainError, match="release it") as error:
        services.delete_did(numbers.a, actor=SYSTEM)
    assert error.value.field == "customer"
    assert Did.objects.filter(pk=numbers.a.pk).exists()


def test_monthly_and_per_minute_prices_are_positive_and_bounded(cast):
    with pytest.raises(OutOfRange) as error:
        make_did("442079460050", sell_monthly=Decimal("-1"))
    assert error.value.field == "sell_monthly"
    with pytest.raises(OutOfRange) as error:
        make_did("442079460050", buy_per_minute=Decimal("10") ** 8)
    assert error.value.field == "buy_per_minute"
    assert not Did.objects.exists()


# --- numbers and blocks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "last_number"),
    [
        ("442079460150", ""),  # inside the block
        ("442079460100", ""),  # its first number
        ("442079460190", "442079460250"),  # overlaps its end
        ("442079460000", "442079460100"),  # overlaps its start
        ("442079460000", "442079460999"),  # holds all of it
        ("442079460001", ""),  # a single number already taken
    ],
)
def test_a_number_another_did_holds_is_refused(numbers, number, last_number):
    with pytest.raises(ValidationError) as error:
        make_did(number, last_number=last_number)
    assert "number" in error.value.message_dict


def test_numbers_of_another_length_do_not_overlap(numbers):
    assert make_did("4420794601500").number == "4420794601500"  # 13 digits, not in the 12-digit block


@pytest.mark.parametrize(
    ("number", "last_number", "field"),
    [
        ("442079460100", "44207946019", "last_number"),  # shorter than the first
        ("442079460100", "442079460099", "last_number"),  # before the first
        ("442079460000", str(442079460000 + MAX_RANGE), "last_number"),  # one too many
        ("44207946x100", "", "number"),
        ("442079460100", "4420794601x9", "last_number"),
    ],
)
def test_a_block_runs_forward_over_numbers_of_one_length_and_a_bounded_size(cast, number, last_number, field):
    with pytest.raises(ValidationError) as error:
        make_did(number, last_number=last_number)
    assert field in error.value.message_dict


def test_the_largest_block_is_accepted_and_holds_its_numbers(cast):
    did = make_did("442079400000", last_number=str(442079400000 + MAX_RANGE - 1))
    assert did.size == MAX_RANGE
    assert list(Did.objects.covering("442079412345")) == [did]
    assert not Did.objects.covering(str(442079400000 + MAX_RANGE)).exists()


# --- targets --------------------------------------------------------------------------------


def test_targets_are_kept_in_the_order_given(numbers, cast):
    second = add_sip_account(cast.a.customer, "a-mobile")
    services.set_targets(numbers.a, [(second, 10), (numbers.sip_a, None)], actor=SYSTEM)
    assert target_names(numbers.a) == [str(second), str(numbers.sip_a)]
    assert list(numbers.a.targets.values_list("position", flat=True)) == [0, 1]
    assert AuditEntry.objects.filter(action="did.targets_set", object_id=str(numbers.a.pk)).exists()


def test_a_did_rings_only_its_own_customers_accounts_and_gateways(numbers, cast):
    trunk = make_peer("PBX B", role=Peer.Role.USER, reseller=cast.b.reseller)
    gateway = peer_services.add_gateway(trunk, actor=SYSTEM, name="pbx", host="pbx.example.net")
    for target in (numbers.sip_b, gateway):
        with pytest.raises(ValidationError) as error:
            services.set_targets(numbers.a, [(target, None)], actor=SYSTEM)
        assert "Target 1" in error.value.message_dict["targets"][0]
    assert target_names(numbers.a) == [str(numbers.sip_a)]


def test_a_user_peers_did_rings_its_own_gateway(cast):
    trunk = make_peer("PBX A", role=Peer.Role.USER, reseller=cast.a.reseller)
    gateway = peer_services.add_gateway(trunk, actor=SYSTEM, name="pbx", host="pbx.example.net")
    did = make_did("442079460050", customer=trunk, targets=[(gateway, 30)])
    assert [(t.gateway, t.setup_timeout) for t in did.targets.all()] == [(gateway, 30)]


@pytest.mark.parametrize(("timeout", "message"), [(0, "between 1 and 300"), (301, "between 1 and 300")])
def test_a_setup_timeout_is_between_one_second_and_five_minutes(numbers, timeout, message):
    with pytest.raises(ValidationError, match=message):
        services.set_targets(numbers.a, [(numbers.sip_a, timeout)], actor=SYSTEM)


def test_a_target_is_listed_once(numbers):
    with pytest.raises(ValidationError, match="already target 1"):
        services.set_targets(numbers.a, [(numbers.sip_a, None), (numbers.sip_a, 5)], actor=SYSTEM)


def test_a_did_in_stock_has_no_targets(numbers):
    with pytest.raises(DomainError) as error:
        services.set_targets(numbers.stock, [(numbers.sip_a, None)], actor=SYSTEM)
    assert error.value.field == "targets"
    with pytest.raises(DomainError) as error:
        make_did("442079460050", targets=[(numbers.sip_a, None)])
    assert error.value.field == "targets"
    assert not Did.objects.filter(number="442079460050").exists()


def test_the_customer_makes_its_did_a_ring_group_and_back(numbers, cast):
    second = add_sip_account(cast.a.customer, "a-mobile")
    customer = Scope.of_user(cast.a.customer_user)
    services.set_targets(numbers.a, [(numbers.sip_a, None), (second, None)], actor=customer, hunting="all")
    assert Did.objects.get(pk=numbers.a.pk).hunting == "all"
    assert AuditEntry.objects.filter(action="did.changed", object_id=str(numbers.a.pk)).exists()
    with pytest.raises(DomainError) as error:
        services.set_targets(numbers.a, [(numbers.sip_a, None)], actor=customer, hunting="random")
    assert error.value.field == "hunting"
    assert Did.objects.get(pk=numbers.a.pk).hunting == "all"  # nothing half-written
    # Its reseller may set it too, with the prices it sets.
    services.update_did(numbers.a, actor=Scope.of_user(cast.a.staff), changes={"hunting": "sequence"})
    assert Did.objects.get(pk=numbers.a.pk).hunting == "sequence"


def test_an_empty_list_leaves_the_did_ringing_nowhere(numbers):
    services.set_targets(numbers.a, [], actor=SYSTEM)
    assert target_names(numbers.a) == []


# --- announcements --------------------------------------------------------------------------


def test_every_writer_announces_the_dids_and_targets_it_wrote(numbers, cast, announced):
    with announced() as seen:
        did = make_did("442079460050", customer=cast.a.customer, targets=[(numbers.sip_a, None)])
    assert did.pk in seen["dids.Did"]
    assert set(did.targets.values_list("pk", flat=True)) <= seen["dids.DidTarget"]

    with announced() as seen:
        services.update_did(did, actor=SYSTEM, changes={"sell_per_minute": Decimal("0.02")})
    assert seen == {"dids.Did": {did.pk}}

    old = set(did.targets.values_list("pk", flat=True))
    with announced() as seen:
        services.set_targets(did, [(numbers.sip_a, 9)], actor=SYSTEM)
    assert old | set(did.targets.values_list("pk", flat=True)) <= seen["dids.DidTarget"]
    assert did.pk in seen["dids.Did"]

    with announced() as seen:
        services.release_did(did, actor=SYSTEM)
    assert did.pk in seen["dids.Did"] and seen["dids.DidTarget"]

    with announced() as seen:
        services.assign_did(did, cast.a.customer, actor=SYSTEM)
    assert did.pk in seen["dids.Did"]

    pk = did.pk
    with announced() as seen:
        services.release_did(did, actor=SYSTEM)
        services.delete_did(did, actor=SYSTEM)
    assert pk in seen["dids.Did"]


# --- who may do what ------------------------------------------------------------------------


def test_only_the_operator_adds_and_deletes_dids(numbers, cast):
    for actor in (Scope.of_user(cast.a.staff), Scope.of_user(cast.a.customer_user)):
        with pytest.raises(NotAllowed):
            services.create_did(actor=actor, number="442079460050")
        with pytest.raises(NotAllowed):
            services.delete_did(numbers.stock, actor=actor)
    assert Did.objects.count() == 3


@pytest.mark.parametrize("field", ["buy_monthly", "buy_per_minute", "supplier_id", "number", "enabled"])
def test_a_reseller_cannot_change_what_the_operator_decides(numbers, cast, field):
    value = {"supplier_id": None, "number": "442079460009", "enabled": False}.get(field, Decimal("0"))
    with pytest.raises(NotAllowed) as error:
        services.update_did(numbers.a, actor=Scope.of_user(cast.a.staff), changes={field: value})
    assert error.value.field == field.removesuffix("_id")


def test_a_reseller_sets_what_its_customer_pays(numbers, cast):
    did = services.update_did(
        numbers.a,
        actor=Scope.of_user(cast.a.staff),
        changes={"sell_monthly": Decimal("7"), "sell_per_minute": Decimal("0.03")},
    )
    assert (did.sell_monthly, did.sell_per_minute) == (Decimal("7"), Decimal("0.03"))
    assert fee_of(did.sell_fee_id).amount == Decimal("7")
    entry = AuditEntry.objects.get(action="did.changed", object_id=str(did.pk))
    assert (entry.actor, entry.reseller_id) == (cast.a.staff, cast.a.reseller.pk)


def test_a_reseller_cannot_touch_another_resellers_did_or_the_stock(numbers, cast):
    staff_a = Scope.of_user(cast.a.staff)
    with pytest.raises(NotAllowed):
        services.update_did(numbers.b, actor=staff_a, changes={"sell_monthly": Decimal("1")})
    with pytest.raises(NotAllowed):
        services.set_targets(numbers.b, [], actor=staff_a)
    with pytest.raises(NotAllowed):
        services.release_did(numbers.b, actor=staff_a)
    with pytest.raises(NotAllowed):
        services.assign_did(numbers.stock, cast.a.customer, actor=staff_a)
    numbers.b.refresh_from_db()
    assert (numbers.b.customer, numbers.b.sell_monthly) == (cast.b.customer, Decimal("5"))
    assert target_names(numbers.b) == [str(numbers.sip_b)]


def test_a_reseller_assigns_its_dids_only_to_its_own_customers(numbers, cast):
    with pytest.raises(NotAllowed) as error:
        services.assign_did(numbers.a, cast.b.customer, actor=Scope.of_user(cast.a.staff))
    assert error.value.field == "customer"
    numbers.a.refresh_from_db()
    assert numbers.a.customer == cast.a.customer


def test_a_reseller_releases_its_customers_did_to_stock(numbers, cast):
    did = services.release_did(numbers.a, actor=Scope.of_user(cast.a.staff))
    assert did.customer is None
    assert not Did.objects.visible_to(cast.a.staff).filter(pk=did.pk).exists()


def test_a_customer_routes_its_own_did_to_its_own_accounts_and_nothing_else(numbers, cast):
    customer = Scope.of_user(cast.a.customer_user)
    mobile = add_sip_account(cast.a.customer, "a-mobile")

    services.set_targets(numbers.a, [(mobile, 15), (numbers.sip_a, None)], actor=customer)
    assert target_names(numbers.a) == [str(mobile), str(numbers.sip_a)]

    with pytest.raises(NotAllowed):
        services.set_targets(numbers.b, [], actor=customer)
    with pytest.raises(NotAllowed):
        services.update_did(numbers.a, actor=customer, changes={"sell_monthly": Decimal("0")})
    with pytest.raises(NotAllowed):
        services.release_did(numbers.a, actor=customer)
    with pytest.raises(NotAllowed):
        services.assign_did(numbers.stock, cast.a.customer, actor=customer)


def test_dids_are_visible_to_their_customer_its_reseller_and_the_operator(numbers, cast):
    def seen(who):
        return set(Did.objects.visible_to(who).values_list("pk", flat=True))

    assert seen(cast.operator) == {numbers.a.pk, numbers.b.pk, numbers.stock.pk}
    assert seen(cast.a.staff) == seen(cast.a.customer_user) == {numbers.a.pk}
    assert seen(cast.b.staff) == {numbers.b.pk}
