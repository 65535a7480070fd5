"""Price lists, their single rates and the import templates: create and change them."""

import logging
from collections.abc import Iterable

from django.core.exceptions import ValidationError

from apps.audit import services as audit
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.core.services import apply_changes, ensure_manages, save_object
from apps.rates.models import ImportTemplate, Rate, RateTable
from apps.rates.services.time_profiles import known_periods
from apps.tenancy.scope import Scope

TABLE_SETTINGS = (
    "name",
    "currency",
    "price_increase_notice_days",
    "on_net_price",
    "description",
    "prices_include_tax",
)

logger = logging.getLogger(__name__)


@retry_on_conflict
def create_rate_table(
    *, actor: Scope, name: str, purpose: str, currency: str, reseller_id: int | None = None, **fields
) -> RateTable:
    """Create an empty price list; a reseller's staff always create sell lists of their own."""
    if actor.is_reseller:
        reseller_id = actor.reseller_id
    ensure_manages(actor, reseller_id)
    table = apply_changes(
        RateTable(name=name, purpose=purpose, currency=currency, reseller_id=reseller_id),
        fields,
        allowed=TABLE_SETTINGS,
    )
    save_object(table, actor=actor, action="ratetable.created")
    announce("rates.RateTable", [table.pk])
    return table


@retry_on_conflict
def update_rate_table(table: RateTable, *, actor: Scope, changes: dict) -> RateTable:
    """Rename a price list or change its notice period."""
    ensure_manages(actor, table.reseller_id)
    current = RateTable.objects.select_for_update().get(pk=table.pk)
    apply_changes(current, changes, allowed=TABLE_SETTINGS)
    save_object(current, actor=actor, action="ratetable.changed")
    # Call control holds each price list's currency; prices it reads through apps.rates.lookup.
    announce("rates.RateTable", [current.pk], fields=changes)
    return current


@retry_on_conflict
def add_rates(table: RateTable, rates: Iterable[Rate], *, actor: Scope, batch_size: int = 2000) -> int:
    """Validate and insert `rates` into `table`, all or nothing; returns how many."""
    ensure_manages(actor, table.reseller_id)
    rows = []
    first_seen: dict[tuple, int] = {}
    periods = None
    for number, rate in enumerate(rates, start=1):
        rate.table = table
        rate.version_from = table.live_version
        try:
            rate.full_clean(exclude=["table"], validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            raise ValidationError(f"Rate #{number} ({rate.prefix}): {' '.join(exc.messages)}") from None
        if rate.period:
            periods = known_periods() if periods is None else periods
            if rate.period not in periods:
                raise ValidationError(
                    f"Rate #{number} ({rate.prefix}): no time profile is named {rate.period}."
                )
        key = (rate.prefix, rate.period, rate.effective_from)
        if key in first_seen:
            raise ValidationError(
                f"Rate #{number} ({rate.prefix}): the same prefix, period and start "
                f"as rate #{first_seen[key]}."
            )
        first_seen[key] = number
        rows.append(rate)
    # One query per batch of prefixes tells whether any period already starts at the same time.
    prefixes = sorted({prefix for prefix, _, _ in first_seen})
    for start in range(0, len(prefixes), batch_size):
        stored = (
            table.rates.live()
            .filter(prefix__in=prefixes[start : start + batch_size])
            .values_list("prefix", "period", "effective_from")
        )
        for key in stored:
            if key in first_seen:
                raise ValidationError(
                    f"Rate #{first_seen[key]} ({key[0]}): the table already has a price starting at {key[2]}."
                )
    Rate.objects.bulk_create(rows, batch_size=batch_size)
    audit.record(actor, "ratetable.rates_added", table, count=len(rows))
    return len(rows)


# Import templates: how a supplier writes its price lists.

TEMPLATE_SETTINGS = (
    "name",
    "table_id",
    "columns",
    "decimal_comma",
    "date_format",
    "increment_column",
    "clean_prefix",
    "skip_lines",
    "delimiter",
)


@retry_on_conflict
def create_import_template(
    *, actor: Scope, name: str, table: RateTable | None = None, **fields
) -> ImportTemplate:
    """Describe a supplier's file format; a template without a table is the operator's."""
    ensure_manages(actor, table.reseller_id if table else None)
    template = apply_changes(ImportTemplate(name=name, table=table), fields, allowed=TEMPLATE_SETTINGS)
    return save_object(template, actor=actor, action="importtemplate.created")


@retry_on_conflict
def update_import_template(template: ImportTemplate, *, actor: Scope, changes: dict) -> ImportTemplate:
    """Change a template's mapping or formats (its table stays in the same owner's hands)."""
    ensure_manages(actor, template.table.reseller_id if template.table_id else None)
    current = ImportTemplate.objects.select_for_update().get(pk=template.pk)
    apply_changes(current, changes, allowed=TEMPLATE_SETTINGS)
    ensure_manages(actor, current.table.reseller_id if current.table_id else None)
    return save_object(current, actor=actor, action="importtemplate.changed")
