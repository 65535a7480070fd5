"""A second layer on the cast for admin tests: one object of every admin-visible kind per
reseller, logged-in clients, and the POST data a browser would send for a change form."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest
from django.forms import CheckboxInput, MultiWidget
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.billing import services as billing
from apps.invoicing.services import invoices
from apps.peers import services as peer_services
from apps.rates import services as rate_services
from apps.rates.models import Rate
from apps.tenancy.models import ApiKey
from apps.tenancy.scope import Scope
from tests.factories import CdrFactory

SYSTEM = Scope.system()


@dataclass
class Holdings:
    """One object of each kind an admin page shows, all belonging to one reseller."""

    reseller: object
    apikey: object
    peer: object
    endpoint: object
    sipaccount: object
    rewriterule: object
    blocklist: object
    ratetable: object
    rate: object
    account: object
    ledgerentry: object
    cdr: object
    auditentry: object
    invoice: object
    issuer: object


def _holdings(tenant, *, octet: int, cast) -> Holdings:
    peer = tenant.customer
    label = tenant.reseller.name[-1].lower()
    endpoint = peer_services.add_endpoint(peer, actor=SYSTEM, ip=f"192.0.2.{octet}", description="office")
    sip = peer_services.add_sip_account(
        peer, actor=SYSTEM, username=f"pbx-{label}", domain="sip.example.com", password="pbx-secret-42"
    )
    rule = peer_services.add_rewrite_rule(
        peer, actor=SYSTEM, field="callee", pattern=r"^00(\d+)$", replacement=r"\1"
    )
    blocklist = peer_services.create_blocklist(
        actor=SYSTEM, name=f"Premium {label}", kind="destination", reseller_id=tenant.reseller.pk
    )
    peer_services.add_blocklist_entries(blocklist, ["44900"], actor=SYSTEM)
    peer_services.set_peer_blocklists(peer, [blocklist], actor=SYSTEM)
    rate = Rate(
        prefix="44",
        destination="United Kingdom",
        price=Decimal("0.01"),
        effective_from=timezone.now() - timezone.timedelta(days=1),
    )
    rate_services.add_rates(tenant.sell_table, [rate], actor=SYSTEM)
    entry, _ = billing.post_payment(
        peer.account, actor=SYSTEM, amount=Decimal("10"), reference=f"seed-{label}"
    )
    cdr = CdrFactory(customer=peer, supplier=cast.supplier, node=cast.node)
    # A past month's invoice (the seed payment is today's, so it is empty): its issuer's
    # profile comes with it.
    invoice = invoices.issue(
        invoices.create_invoice(
            peer.account, actor=SYSTEM, period_start=date(2024, 3, 1), period_end=date(2024, 3, 31)
        ),
        actor=SYSTEM,
    )
    return Holdings(
        reseller=tenant.reseller,
        apikey=ApiKey.objects.get(reseller=tenant.reseller),
        peer=peer,
        endpoint=endpoint,
        sipaccount=sip,
        rewriterule=rule,
        blocklist=blocklist,
        ratetable=tenant.sell_table,
        rate=Rate.objects.get(table=tenant.sell_table, prefix="44"),
        account=peer.account,
        ledgerentry=entry,
        cdr=cdr,
        auditentry=AuditEntry.objects.filter(reseller=tenant.reseller).order_by("pk").first(),
        invoice=invoice,
        issuer=invoice.issuer,
    )


@dataclass
class World:
    a: Holdings
    b: Holdings


@pytest.fixture
def world(cast) -> World:
    return build_world(cast)


def build_world(cast) -> World:
    return World(a=_holdings(cast.a, octet=10, cast=cast), b=_holdings(cast.b, octet=20, cast=cast))


def admin_url(obj_or_model, view: str = "change", *args) -> str:
    opts = obj_or_model._meta
    if view in ("change", "delete", "history") and not args:
        args = (obj_or_model.pk,)
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def tool_url(obj, tool: str) -> str:
    return admin_url(obj, "tool", obj.pk, tool)


def listed(response) -> set:
    """Primary keys on an admin changelist page."""
    assert response.status_code == 200, response.status_code
    return {obj.pk for obj in response.context["cl"].result_list}


def form_payload(response) -> dict:
    """The POST data a browser sends for the admin change form in `response`, unchanged."""
    assert response.status_code == 200, response.status_code
    data: dict = {}
    _add_form(data, response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        _add_form(data, inline.formset.management_form)
        for form in inline.formset.forms:
            _add_form(data, form)
    return data


def _add_form(data: dict, form) -> None:
    for bound in form:
        value = bound.value()
        widget = bound.field.widget
        if isinstance(widget, CheckboxInput):
            if value:
                data[bound.html_name] = "on"
        elif isinstance(widget, MultiWidget):
            for index, part in enumerate(widget.decompress(value)):
                data[f"{bound.html_name}_{index}"] = "" if part is None else str(part)
        elif isinstance(value, list | tuple):
            data[bound.html_name] = [str(v) for v in value]
        else:
            data[bound.html_name] = "" if value is None else str(value)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []
