"""Rating in the admin: the calls that could not be rated, rated again on request; and
re-rating runs, requested through apps.billing.services.rerating and shown with what they changed."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.billing.models import Account, RerateLine, RerateRun
from apps.billing.services import rating, rerating
from apps.cdr.admin import HIDDEN_REASON
from apps.cdr.models import Cdr, RatingError
from apps.peers.models import Peer
from apps.rates import services as rate_services
from apps.tenancy.scope import Scope
from tests.admin.conftest import admin_url, form_payload, listed, messages_of
from tests.factories import CdrFactory, make_rate_table
from tests.switching import rate

SYSTEM = Scope.system()
ERROR = Cdr.RatingState.ERROR


def failed(customer, error: str, *, supplier=None, callee: str = "33612345678", **fields) -> Cdr:
    """A call the rater could not price, with the reason it writes."""
    return CdrFactory(
        customer=customer,
        supplier=supplier,
        callee=callee,
        rating_state=ERROR,
        rating_error=error,
        sell_cost=None,
        buy_cost=None,
        billable_seconds=0,
        **fields,
    )


@pytest.fixture
def errors(cast):
    """Rating errors of both resellers' customers and of the operator's, and a rated call."""
    supplier = cast.supplier
    return {
        "a_sell": failed(cast.a.customer, "No sell rate for 33612345678 in Customer A's price list at x."),
        "a_buy": failed(
            cast.a.customer,
            "No buy rate for 4420 in Carrier X's price list at 2026-11-25 10:00:00.",
            supplier=supplier,
            callee="4420",
        ),
        "b_sell": failed(cast.b.customer, "Customer Customer B has no sell price list."),
        "op_buy": failed(
            cast.operator_customer, "Supplier Carrier X has no buy price list.", supplier=supplier
        ),
        "rated": CdrFactory(customer=cast.a.customer, supplier=supplier),
    }


# --- the rating errors list --------------------------------------------------------------------


def test_rating_errors_are_the_calls_that_could_not_be_rated_scoped_like_cdrs(cast, errors):
    assert set(RatingError.objects.values_list("pk", flat=True)) == {
        errors[name].pk for name in ("a_sell", "a_buy", "b_sell", "op_buy")
    }
    a = Scope.of_user(cast.a.staff)
    assert set(RatingError.objects.visible_to(a).values_list("pk", flat=True)) == {
        errors["a_sell"].pk,
        errors["a_buy"].pk,
    }


def test_the_operator_lists_every_rating_error_with_its_supplier_and_reason(cast, errors, login):
    response = login(cast.operator).get(admin_url(RatingError, "changelist"))
    assert listed(response) == {errors[name].pk for name in ("a_sell", "a_buy", "b_sell", "op_buy")}
    assert response.context["cl"].list_display[1:] == [
        "created_at",
        "customer",
        "supplier",
        "callee",
        "duration",
        "rating_error",
    ]
    page = response.content.decode()
    assert "No buy rate for 4420 in Carrier X&#x27;s price list" in page
    assert "Supplier Carrier X has no buy price list." in page


def test_a_reseller_lists_its_customers_errors_without_the_supplier_leg(cast, errors, login):
    response = login(cast.a.staff).get(admin_url(RatingError, "changelist"))
    assert listed(response) == {errors["a_sell"].pk, errors["a_buy"].pk}
    assert "supplier" not in response.context["cl"].list_display
    page = response.content.decode()
    assert "Carrier X" not in page
    assert "No sell rate for 33612345678 in Customer A&#x27;s price list" in page
    assert HIDDEN_REASON.replace("'", "&#x27;") in page


def test_a_reseller_cannot_filter_on_the_hidden_error_text(cast, errors, login):
    client = login(cast.a.staff)
    response = client.get(admin_url(RatingError, "changelist"), {"rating_error__contains": "Carrier"})
    assert response.status_code == 400
    response = client.get(admin_url(Cdr, "changelist"), {"rating_error__contains": "Carrier"})
    assert response.status_code == 400


def test_the_cdr_page_hides_the_supplier_side_reason_from_resellers(cast, errors, login):
    page = login(cast.a.staff).get(admin_url(errors["a_buy"]))
    assert page.status_code == 200
    assert "Carrier X" not in page.content.decode()
    assert HIDDEN_REASON.replace("'", "&#x27;") in page.content.decode()
    operator_page = login(cast.operator).get(admin_url(Cdr, "change", errors["a_buy"].pk)).content.decode()
    assert "Carrier X&#x27;s price list" in operator_page
    assert HIDDEN_REASON.replace("'", "&#x27;") not in operator_page


def test_another_resellers_rating_error_reads_as_absent(cast, errors, login):
    client = login(cast.a.staff)
    response = client.get(admin_url(RatingError, "change", errors["b_sell"].pk), follow=True)
    assert response.redirect_chain[0] == (reverse("admin:index"), 302)
    assert "Customer B" not in response.content.decode()
    assert client.get(admin_url(RatingError, "change", errors["a_sell"].pk)).status_code == 200
    # A rated call is not a rating error, even for its owner.
    assert client.get(admin_url(RatingError, "change", errors["rated"].pk)).status_code == 302


def test_customers_do_not_reach_rating_errors(cast, errors, login):
    url = admin_url(RatingError, "changelist")
    response = login(cast.a.customer_user).get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_rating_errors_are_searched_by_callee_and_call_id(cast, errors, login):
    client = login(cast.operator)
    url = admin_url(RatingError, "changelist")
    assert listed(client.get(url, {"q": "4420"})) == {errors["a_buy"].pk}
    assert listed(client.get(url, {"q": errors["b_sell"].call_id})) == {errors["b_sell"].pk}
    assert listed(client.get(url, {"q": errors["rated"].call_id})) == set()


def test_rating_errors_are_filtered_by_customer_and_by_kind(cast, errors, login):
    client = login(cast.operator)
    url = admin_url(RatingError, "changelist")
    assert listed(client.get(url, {"customer__id__exact": cast.a.customer.pk})) == {
        errors["a_sell"].pk,
        errors["a_buy"].pk,
    }
    assert listed(client.get(url, {"error_kind": "buy_rate"})) == {errors["a_buy"].pk}
    assert listed(client.get(url, {"error_kind": "buy_table"})) == {errors["op_buy"].pk}
    assert listed(client.get(url, {"error_kind": "sell_table"})) == {errors["b_sell"].pk}
    assert listed(client.get(url, {"error_kind": "other"})) == set()

    reseller = login(cast.a.staff)
    kinds = [choice[0] for choice in reseller.get(url).context["cl"].filter_specs[1].lookup_choices]
    assert "buy_rate" not in kinds
    assert "supplier_side" in kinds
    assert listed(reseller.get(url, {"error_kind": "supplier_side"})) == {errors["a_buy"].pk}
    assert listed(reseller.get(url, {"error_kind": "sell_rate"})) == {errors["a_sell"].pk}
    # An operator-only kind is ignored rather than obeyed.
    assert listed(reseller.get(url, {"error_kind": "buy_rate"})) == {errors["a_sell"].pk, errors["a_buy"].pk}
    customers = [label for _, label in reseller.get(url).context["cl"].filter_specs[0].lookup_choices]
    assert customers == [str(cast.a.customer)]


def test_rate_again_puts_the_selected_errors_back_in_the_queue(cast, errors, login):
    response = login(cast.operator).post(
        admin_url(RatingError, "changelist"),
        {"action": "rate_again", "_selected_action": [errors["a_sell"].pk, errors["op_buy"].pk]},
        follow=True,
    )
    assert any("2 calls put back in the rating queue" in message for message in messages_of(response))
    for name, state in (("a_sell", "unrated"), ("op_buy", "unrated"), ("b_sell", "error")):
        call = Cdr.objects.get(pk=errors[name].pk)
        assert call.rating_state == state
        assert bool(call.rating_error) == (state == "error")


def test_a_reseller_rates_again_only_its_own_customers_calls(cast, errors, login):
    login(cast.a.staff).post(
        admin_url(RatingError, "changelist"),
        {"action": "rate_again", "_selected_action": [errors["a_buy"].pk, errors["b_sell"].pk]},
    )
    assert Cdr.objects.get(pk=errors["a_buy"].pk).rating_state == "unrated"
    assert Cdr.objects.get(pk=errors["b_sell"].pk).rating_state == "error"


def test_a_call_fixed_by_a_new_rate_is_rated_and_charged_after_rate_again(world, cast, login):
    call = Cdr.objects.create(
        call_id="premium@test",
        node=world.node,
        customer=world.customer,
        supplier=world.suppliers["Bravo"],
        callee="999123",
        created_at=timezone.now() - timedelta(minutes=2),
        answered_at=timezone.now() - timedelta(minutes=2),
        ended_at=timezone.now() - timedelta(minutes=1),
        duration_ms=60_000,
        sip_code=200,
    )
    rating.rate_batch()
    assert RatingError.objects.filter(pk=call.pk).exists()
    for table in (world.sell_table, world.suppliers["Bravo"].buy_rate_table):
        rate_services.add_rates(table, [rate("999", "0.5000", "Premium")], actor=SYSTEM)
    world.snapshot()  # as the index rebuild does on every node after an import

    login(cast.operator).post(
        admin_url(RatingError, "changelist"), {"action": "rate_again", "_selected_action": [call.pk]}
    )
    rating.rate_batch()

    call.refresh_from_db()
    assert (call.rating_state, call.sell_cost) == ("rated", Decimal("0.500000"))
    assert not RatingError.objects.filter(pk=call.pk).exists()
    assert world.customer.account.entries.get(kind="charge").amount == Decimal("-0.5")


# --- re-rating runs ---------------------------------------------------------------------------


def moment(days_ago: int) -> str:
    return (timezone.localtime() - timedelta(days=days_ago)).strftime("%Y-%m-%d %H:%M:%S")


def add_run_payload(start: str, end: str, *, peer=None, table=None) -> dict:
    return {
        "period_start_0": start[:10],
        "period_start_1": start[11:],
        "period_end_0": end[:10],
        "period_end_1": end[11:],
        "peer": peer.pk if peer else "",
        "table": table.pk if table else "",
    }


def test_the_add_form_offers_only_the_peers_and_price_lists_the_user_may_see(cast, login):
    form = login(cast.a.staff).get(admin_url(RerateRun, "add")).context["adminform"].form
    assert set(form.fields["peer"].queryset) == set(Peer.objects.filter(reseller=cast.a.reseller))
    assert set(form.fields["table"].queryset) == {cast.a.sell_table}
    assert list(form.fields) == ["period_start", "period_end", "peer", "table"]
    operator_form = login(cast.operator).get(admin_url(RerateRun, "add")).context["adminform"].form
    assert cast.supplier in operator_form.fields["peer"].queryset


def test_a_run_is_requested_through_the_service_and_opens_on_its_page(cast, login):
    client = login(cast.a.staff)
    response = client.post(
        admin_url(RerateRun, "add"),
        add_run_payload(moment(7), moment(1), table=cast.a.sell_table),
        follow=True,
    )
    run = RerateRun.objects.get()
    assert response.redirect_chain[-1][0] == admin_url(run)
    assert (run.state, run.table, run.peer, run.reseller, run.actor) == (
        "pending",
        cast.a.sell_table,
        None,
        cast.a.reseller,
        cast.a.staff,
    )
    assert AuditEntry.objects.filter(action="rerate.requested", object_id=str(run.pk)).exists()
    assert any("is queued" in message for message in messages_of(response))
    assert "the run waits for a worker" in response.content.decode()


@pytest.mark.parametrize(
    ("who", "days", "field", "message"),
    [
        ("operator", (1, 7), "period_end", "The period ends after it starts."),
        ("staff", (7, 1), "peer", "Choose one of your peers or price lists to re-rate."),
    ],
)
def test_the_services_refusals_show_on_the_add_form(who, days, field, message, cast, login):
    user = cast.operator if who == "operator" else cast.a.staff
    response = login(user).post(
        admin_url(RerateRun, "add"), add_run_payload(moment(days[0]), moment(days[1]))
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [message]
    assert not RerateRun.objects.exists()


def test_another_resellers_peer_or_price_list_is_not_a_choice(cast, login):
    response = login(cast.a.staff).post(
        admin_url(RerateRun, "add"), add_run_payload(moment(7), moment(1), peer=cast.b.customer)
    )
    assert "peer" in response.context["adminform"].form.errors
    response = login(cast.a.staff).post(
        admin_url(RerateRun, "add"), add_run_payload(moment(7), moment(1), table=cast.b.sell_table)
    )
    assert "table" in response.context["adminform"].form.errors
    assert not RerateRun.objects.exists()


def _run(cast, tenant, **fields) -> RerateRun:
    actor = Scope.system() if tenant is None else Scope.of_user(tenant.staff)
    now = timezone.now()
    table = fields.pop("table", tenant.sell_table if tenant else None)
    return rerating.request_rerate(
        actor=actor, period_start=now - timedelta(days=7), period_end=now, table=table, **fields
    )


def test_runs_are_listed_to_their_owner_and_the_operator_only(cast, login):
    a_run, b_run, op_run = _run(cast, cast.a), _run(cast, cast.b), _run(cast, None)
    assert listed(login(cast.a.staff).get(admin_url(RerateRun, "changelist"))) == {a_run.pk}
    assert listed(login(cast.operator).get(admin_url(RerateRun, "changelist"))) == {
        a_run.pk,
        b_run.pk,
        op_run.pk,
    }
    response = login(cast.a.staff).get(admin_url(b_run), follow=True)
    assert response.redirect_chain[0] == (reverse("admin:index"), 302)
    assert login(cast.a.customer_user).get(admin_url(RerateRun, "changelist")).status_code == 302


def test_the_run_page_shows_what_changed_per_account_and_cannot_be_edited(cast, login):
    run = _run(cast, cast.a)
    other_table = make_rate_table("Retail A-bis", reseller=cast.a.reseller)
    RerateLine.objects.create(
        run=run, account=cast.a.customer.account, calls=3, before=Decimal("1.5"), after=Decimal("2.25")
    )
    # A line on an account the reseller cannot see (never written by a reseller's run) stays hidden.
    RerateLine.objects.create(
        run=run, account=cast.b.customer.account, calls=9, before=Decimal("9"), after=Decimal("1")
    )
    RerateRun.objects.filter(pk=run.pk).update(state="done", examined=10, changed=3)
    client = login(cast.a.staff)
    response = client.get(admin_url(run))
    assert response.status_code == 200
    page = response.content.decode()
    assert [line.account_id for line in response.context["lines"]] == [cast.a.customer.account.pk]
    for shown in ("1.500000", "2.250000", "0.750000", "Done"):
        assert shown in page
    assert "Customer B" not in page
    assert 'name="_save"' not in page
    payload = form_payload(client.get(admin_url(run)))
    payload["table"] = other_table.pk
    assert client.post(admin_url(run), payload).status_code == 403
    assert RerateRun.objects.get(pk=run.pk).table == cast.a.sell_table


def test_a_run_totals_its_lines_only_when_they_share_a_currency(cast, login):
    run = _run(cast, None)
    for account in (cast.a.customer.account, cast.b.customer.account):
        RerateLine.objects.create(run=run, account=account, calls=1, before=Decimal("1"), after=Decimal("2"))
    client = login(cast.operator)
    assert client.get(admin_url(run)).context["totals"]["difference"] == Decimal("2")
    Account.objects.filter(pk=cast.b.customer.account.pk).update(currency="EUR")
    assert "totals" not in client.get(admin_url(run)).context


@pytest.mark.parametrize("who", ["operator", "staff"])
def test_the_rating_errors_and_runs_lists_cost_a_fixed_number_of_queries(
    who, cast, login, django_assert_max_num_queries
):
    for n in range(30):
        failed(cast.a.customer, f"No sell rate for 99{n} in Customer A's price list.", supplier=cast.supplier)
        _run(cast, cast.a)
    client = login(cast.operator if who == "operator" else cast.a.staff)
    with django_assert_max_num_queries(12):
        assert len(listed(client.get(admin_url(RatingError, "changelist")))) == 30
    with django_assert_max_num_queries(12):
        assert len(listed(client.get(admin_url(RerateRun, "changelist")))) == 30
