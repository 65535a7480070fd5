"""Two-level money: a reseller's own account with the operator, charged for every call of
its customers at the operator's prices for it, once, beside the customer and the supplier."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.billing.models import Account, LedgerEntry
from apps.billing.services import rating
from apps.billing.services.ledger import open_reseller_account
from apps.cdr.models import Cdr
from apps.core.errors import DomainError, NotAllowed
from apps.rates import lookup
from apps.rates import services as rate_services
from apps.rates.models import Rate
from apps.tenancy.scope import Scope
from tests.factories import make_rate_table

SYSTEM = Scope.system()


def operator_prices_for(reseller, prefix: str, fee: str):
    """The operator's sell list for `reseller`: `fee` a call to numbers starting `prefix`."""
    table = make_rate_table(f"{reseller.name} wholesale")
    rate = Rate(
        prefix=prefix,
        destination="Wholesale",
        price=Decimal(0),
        connection_fee=Decimal(fee),
        effective_from=datetime(2000, 1, 1, tzinfo=UTC),
    )
    rate_services.add_rates(table, [rate], actor=SYSTEM)
    lookup.forget_indexes()
    return table


def test_the_reseller_pays_the_operator_for_each_call_of_its_customers_once(cast, unrated_call):
    reseller, customer = cast.a.reseller, cast.a.customer
    account = open_reseller_account(
        reseller, actor=SYSTEM, rate_table_id=operator_prices_for(reseller, "999", "0.18").pk
    )
    first = unrated_call(customer, "0.25")
    second = unrated_call(customer, "0.40")
    other = unrated_call(cast.b.customer, "0.30")  # reseller B has no account: as before

    rating.rate_all()
    rating.rate_all()

    charges = LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.CHARGE)
    assert sorted(charges.values_list("cdr_id", "amount")) == [
        (first.pk, Decimal("-0.18")),
        (second.pk, Decimal("-0.18")),
    ]
    assert Account.objects.get(pk=account.pk).balance == Decimal("-0.36")
    assert Cdr.objects.get(pk=first.pk).reseller_cost == Decimal("0.18")
    assert Cdr.objects.get(pk=other.pk).reseller_cost is None
    assert LedgerEntry.objects.filter(cdr=first, account=customer.account).get().amount == Decimal("-0.25")


def test_a_call_the_operator_has_no_price_for_is_a_rating_error_on_every_side(cast, unrated_call):
    reseller = cast.a.reseller
    account = open_reseller_account(
        reseller, actor=SYSTEM, rate_table_id=operator_prices_for(reseller, "12345", "0.10").pk
    )
    call = unrated_call(cast.a.customer, "0.25")  # a number that list does not price

    rating.rate_all()

    call.refresh_from_db()
    assert call.rating_state == Cdr.RatingState.ERROR
    assert f"reseller {reseller.name}'s price list" in call.rating_error
    assert not LedgerEntry.objects.filter(cdr=call).exists()
    assert Account.objects.get(pk=account.pk).balance == 0


def test_only_the_operator_opens_a_resellers_account_on_its_own_price_list(cast):
    reseller = cast.a.reseller
    own_table = make_rate_table("A's own", reseller=reseller)
    with pytest.raises(NotAllowed):
        open_reseller_account(reseller, actor=Scope.of_user(cast.a.staff), rate_table_id=own_table.pk)
    with pytest.raises(DomainError, match="operator's sell price lists"):
        open_reseller_account(reseller, actor=SYSTEM, rate_table_id=own_table.pk)
    table = operator_prices_for(reseller, "999", "0.1")
    account = open_reseller_account(reseller, actor=SYSTEM, rate_table_id=table.pk, credit_limit=Decimal(50))
    assert (account.reseller, account.peer, account.mode) == (reseller, None, Account.Mode.POSTPAID)
    with pytest.raises(DomainError, match="has an account already"):
        open_reseller_account(reseller, actor=SYSTEM, rate_table_id=table.pk)


def test_the_resellers_credit_bounds_what_its_customers_hold_together(world):
    """The reported hole: a reseller could give its customers any credit. Now its own money
    with the operator bounds their live calls together, whatever their own accounts say."""
    from django.utils import timezone

    from apps.billing.services.ledger import post_payment, update_account
    from apps.callcontrol.decision import decide, settle
    from tests.factories import make_reseller
    from tests.switching import rate, release

    reseller = make_reseller("Wholesale")
    account = open_reseller_account(
        reseller,
        actor=SYSTEM,
        rate_table_id=operator_prices_for(reseller, "49", "0.01").pk,
        credit_limit=Decimal(1),
    )
    one = world.add_customer("One", "198.51.100.41", reseller=reseller, rates=[rate("49", "0.60", "Germany")])
    two = world.add_customer("Two", "198.51.100.42", reseller=reseller, rates=[rate("49", "0.60", "Germany")])
    for peer in (one, two):
        # Customers with money to spare, and a credit their reseller may set as high as it likes.
        update_account(
            peer.account, actor=SYSTEM, changes={"mode": "postpaid", "credit_limit": Decimal(10**9)}
        )
        world.pay(peer, "1000")
    now = timezone.now()

    def call(peer):
        snapshot = world.snapshot()
        decision = decide(snapshot, world.request("4930123456", source_ip=peer.endpoints.first().ip), at=now)
        return settle(snapshot, decision, reserve=True)

    capped = call(one)  # 1.00 of credit at 0.60/min: 100 s
    assert capped.routed and capped.max_duration == 100
    assert "capped by the reseller's credit" in capped.steps[-1].detail
    refused = call(two)
    assert (refused.code, refused.reason) == (402, "Spend limit reached")
    assert "reseller's account with us: 1.000000 to spend, 1.000000 held" in refused.steps[-1].detail
    release(capped.reservation)
    post_payment(account, actor=SYSTEM, amount=Decimal(71), reference="wire-1")
    whole = call(two)  # 72.00 pays for the longest call (2 hours at 0.60/min)
    assert whole.routed and whole.max_duration == 7200


def test_the_operator_invoices_the_reseller_for_its_customers_calls(cast, unrated_call):
    from datetime import date

    from django.db.models import Q

    from apps.invoicing import documents
    from apps.invoicing.models import Invoice, Issuer
    from apps.invoicing.services import invoices

    reseller = cast.a.reseller
    open_reseller_account(
        reseller, actor=SYSTEM, rate_table_id=operator_prices_for(reseller, "999", "0.18").pk
    )
    Issuer.objects.create(
        key=Issuer.key_for(reseller.pk), reseller=reseller, legal_name="A Telecom GmbH", tax_id="DE123"
    )
    march = datetime(2024, 3, 5, tzinfo=UTC)
    unrated_call(cast.a.customer, "0.25", created_at=march)
    unrated_call(cast.a.customer, "0.40", created_at=march)
    rating.rate_all()
    Account.objects.filter(Q(reseller=reseller) | Q(peer=cast.a.customer)).update(
        created_at=datetime(2020, 1, 1, tzinfo=UTC)
    )

    done = invoices.issue_due(now=datetime(2024, 4, 2, tzinfo=UTC))

    mine = Invoice.objects.get(account__reseller=reseller)
    assert (mine.issuer.key, mine.charges, mine.total) == ("operator", Decimal("-0.36"), Decimal("0.36"))
    customers = Invoice.objects.get(account=cast.a.customer.account)
    assert (customers.issuer.key, customers.total) == (f"reseller:{reseller.pk}", Decimal("0.65"))
    assert done["issued"] == 2
    html = documents.render_html(mine)
    assert "A Telecom GmbH" in html and "DE123" in html
    assert (mine.period_start, mine.period_end) == (date(2024, 3, 1), date(2024, 3, 31))


def test_the_operator_opens_a_resellers_account_in_the_admin_and_its_staff_see_it(cast, login):
    reseller = cast.a.reseller
    table = operator_prices_for(reseller, "999", "0.1")
    url = f"/admin/tenancy/reseller/{reseller.pk}/"
    staff = login(cast.a.staff)
    assert "Open its account with us" not in staff.get(f"{url}change/").content.decode()
    assert staff.post(
        f"{url}do/account/", {"rate_table": table.pk, "mode": "postpaid", "credit_limit": "5"}
    ).status_code in (403, 404)
    assert not Account.objects.filter(reseller=reseller).exists()

    operator = login(cast.operator)
    page = operator.get(f"{url}change/").content.decode()
    assert "Open its account with us" in page and "none: its customers&#x27; calls are not charged" in page
    done = operator.post(
        f"{url}do/account/", {"rate_table": table.pk, "mode": "postpaid", "credit_limit": "250"}
    )
    assert done.status_code == 302
    account = Account.objects.get(reseller=reseller)
    assert (account.credit_limit, account.mode) == (Decimal(250), "postpaid")
    assert "Open its account with us" not in operator.get(f"{url}change/").content.decode()
    assert (
        "balance 0.000000 USD, credit 250.000000" in login(cast.a.staff).get(f"{url}change/").content.decode()
    )
