"""Traffic reports from the rollups: one line per customer, supplier, destination, node or
period over a range, for a scope.

What a scope sees is the rollups' `visible_to(scope)`. The supplier side (supplier names,
cost, profit, margin) and the nodes are the operator's, as in the CDR API's tenant cut
(apps.cdr.api.serializers): a reseller's or a customer's report has no such columns and
cannot be grouped or filtered by them.

Money is summed per currency and never across: revenue is in the customer's account
currency, cost in the supplier's. A line is one value of the grouping and one pair of
currencies (almost always one line per value); profit and margin exist only where both
sides share a currency. The totals have a line per pair as well.

The day rollups answer day and month periods over whole local days; the hour rollups
answer hour periods and ranges that start or end inside a day. Of the rollups' shapes
(apps.reports.rollups.SHAPES) a report reads the smallest that keeps what it groups and
filters by, and the customer whenever the scope is a tenant's (`shape_for`). The
currencies are columns of every row: no report joins the accounts.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.nodes.models import Node
from apps.peers.models import Peer
from apps.reports.models import TrafficRollup
from apps.reports.rollups import DAY, HOUR, SHAPES, local_zone
from apps.tenancy.scope import Scope

HUNDRED = Decimal(100)
TWO = Decimal("0.01")

GROUPS = {
    "period": _("Period"),
    "customer": _("Customer"),
    "destination": _("Destination"),
    "supplier": _("Supplier"),
    "node": _("Node"),
}
OPERATOR_GROUPS = ("supplier", "node")
PERIODS = {"hour": _("Hour"), "day": _("Day"), "month": _("Month")}
GROUP_COLUMN = {
    "period": "period_start",
    "customer": "customer_id",
    "destination": "destination",
    "supplier": "supplier_id",
    "node": "node_id",
}
SUMS = (
    "attempts",
    "answered",
    "effective",
    "duration_ms",
    "billable_seconds",
    "pdd_ms",
    "pdd_calls",
    "sell",
    "buy",
    "resold",
    "wholesale",
)
# What each level may add up: the operator everything; a reseller not what we pay our
# suppliers; a customer neither that nor what its reseller pays us.
HIDDEN_SUMS = {"operator": (), "reseller": ("buy",), "customer": ("buy", "resold", "wholesale")}


def level_of(scope: Scope) -> str:
    return "operator" if scope.is_operator else "reseller" if scope.is_reseller else "customer"


def groups_for(scope: Scope) -> list[str]:
    return [g for g in GROUPS if scope.is_operator or g not in OPERATOR_GROUPS]


@dataclass
class Query:
    """What to report: a range [start, end), a grouping, filters and an order."""

    start: datetime
    end: datetime
    group_by: str = "period"
    period: str = "day"
    customer_id: int | None = None
    supplier_id: int | None = None
    destination: str = ""
    node_id: int | None = None
    sort: str = ""
    descending: bool = False


@dataclass
class Line:
    """One line of a report (or a total): sums in two currencies, the rates worked out."""

    key: object = None
    label: str = ""
    currency: str = ""  # the revenue's (customer accounts')
    cost_currency: str = ""  # the cost's (supplier accounts'); "" for tenants
    attempts: int = 0
    answered: int = 0
    effective: int = 0
    duration_ms: int = 0
    billable_seconds: int = 0
    pdd_ms: int = 0
    pdd_calls: int = 0
    sell: Decimal = Decimal(0)
    buy: Decimal = Decimal(0)
    resold: Decimal = Decimal(0)
    wholesale: Decimal = Decimal(0)
    # Whose report: the operator's margin is after its resellers' and its suppliers'; a
    # reseller's after what it pays the operator (docs/BILLING.md, "Margins per level").
    level: str = "operator"

    def add(self, row: dict) -> None:
        for name in SUMS:
            setattr(self, name, getattr(self, name) + (row.get(name) or 0))

    @property
    def minutes(self) -> Decimal:
        return (Decimal(self.duration_ms) / 60000).quantize(TWO)

    @property
    def asr(self) -> Decimal | None:
        return (HUNDRED * self.answered / self.attempts).quantize(TWO) if self.attempts else None

    @property
    def ner(self) -> Decimal | None:
        return (HUNDRED * self.effective / self.attempts).quantize(TWO) if self.attempts else None

    @property
    def acd(self) -> Decimal | None:
        """Average answered call, in minutes."""
        return (Decimal(self.duration_ms) / 60000 / self.answered).quantize(TWO) if self.answered else None

    @property
    def pdd(self) -> Decimal | None:
        """Average post-dial delay, in seconds."""
        return (Decimal(self.pdd_ms) / 1000 / self.pdd_calls).quantize(TWO) if self.pdd_calls else None

    @property
    def revenue(self) -> Decimal:
        return self.sell

    @property
    def resellers_margin(self) -> Decimal:
        """What resellers with an account with us kept of what their customers paid."""
        return self.resold - self.wholesale

    @property
    def earned(self) -> Decimal:
        """This level's own revenue: for the operator, what its customers paid, its
        resellers' customers' calls counted at what the resellers pay it."""
        return self.sell - self.resellers_margin if self.level == "operator" else self.sell

    @property
    def cost(self) -> Decimal | None:
        if self.level == "operator":
            return self.buy
        if self.level == "reseller" and self.sell and self.resold == self.sell:
            return self.wholesale  # what the reseller pays us; unknown without its account
        return None

    @property
    def profit(self) -> Decimal | None:
        cost = self.cost
        if cost is None or (self.level == "operator" and self.currency != self.cost_currency):
            return None  # never subtract EUR from USD
        return self.earned - cost

    @property
    def margin(self) -> Decimal | None:
        profit = self.profit
        if profit is None or not self.earned:
            return None
        return (HUNDRED * profit / self.earned).quantize(TWO)


@dataclass
class Report:
    query: Query
    lines: list[Line] = field(default_factory=list)
    totals: list[Line] = field(default_factory=list)
    supplier_side: bool = False
    grain: str = DAY


ALL, SELLERS, OPERATOR = ("operator", "reseller", "customer"), ("operator", "reseller"), ("operator",)
# (column, label, levels that see it): the table, the sort keys and the export, in this order.
COLUMNS = (
    ("attempts", _("Attempts"), ALL),
    ("answered", _("Answered"), ALL),
    ("minutes", _("Minutes"), ALL),
    ("asr", _("ASR %"), ALL),
    ("acd", _("ACD (min)"), ALL),
    ("pdd", _("PDD (s)"), ALL),
    ("ner", _("NER %"), ALL),
    ("revenue", _("Revenue"), ALL),
    ("resellers_margin", _("Resellers' margin"), OPERATOR),
    ("cost", _("Cost"), SELLERS),
    ("profit", _("Profit"), SELLERS),
    ("margin", _("Margin %"), SELLERS),
)
MONEY_COLUMNS = ("revenue", "resellers_margin", "cost", "profit")


def columns_for(scope: Scope) -> list[tuple[str, str]]:
    level = level_of(scope)
    return [(name, label) for name, label, levels in COLUMNS if level in levels]


def on_day_bounds(start: datetime, end: datetime) -> bool:
    zone = local_zone()
    return all(moment.astimezone(zone).time() == datetime.min.time() for moment in (start, end))


def grain_for(query: Query) -> str:
    """The day table for days and months over whole days; the hour table otherwise."""
    if query.period == "hour" or not on_day_bounds(query.start, query.end):
        return HOUR
    return DAY


def local_days(first: date, last: date) -> tuple[datetime, datetime]:
    """[first 00:00, the day after last 00:00) on the operator's clock, as aware datetimes."""
    zone = local_zone()
    start = datetime.combine(first, datetime.min.time(), tzinfo=zone)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return start, end


def needs(scope: Scope, query: Query) -> set[str]:
    """The dimensions a report reads: its grouping, its filters, and the customer for a
    tenant (scoping is by the customer, and by its reseller)."""
    dims = set()
    if query.group_by != "period":
        dims.add(query.group_by)
    if query.customer_id:
        dims.add("customer")
    if query.destination:
        dims.add("destination")
    if scope.is_operator:
        if query.supplier_id:
            dims.add("supplier")
        if query.node_id:
            dims.add("node")
    else:
        dims.add("customer")
    return dims


def shape_for(scope: Scope, query: Query) -> str:
    """The smallest shape that keeps every dimension the report needs (the full one at worst)."""
    dims = needs(scope, query)
    return next(name for name, kept in SHAPES.items() if dims <= set(kept))


def rows_for(scope: Scope, query: Query, grain: str):
    """The rollups the report reads, scoped and filtered (a queryset)."""
    rows = TrafficRollup.objects.visible_to(scope).filter(
        shape=shape_for(scope, query), grain=grain, period_start__gte=query.start, period_start__lt=query.end
    )
    if query.customer_id:
        rows = rows.filter(customer_id=query.customer_id)
    if query.destination:
        rows = rows.filter(destination=query.destination)
    if scope.is_operator:
        # Tenants never filter by the operator's side: an id they guessed changes nothing.
        if query.supplier_id:
            rows = rows.filter(supplier_id=query.supplier_id)
        if query.node_id:
            rows = rows.filter(node_id=query.node_id)
    return rows


def period_key(moment: datetime, period: str) -> datetime:
    """The start of the hour, day or month `moment` is in, on the operator's clock."""
    local = moment.astimezone(local_zone())
    if period == "month":
        return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local


def period_label(moment: datetime, period: str) -> str:
    if period == "month":
        return f"{moment:%Y-%m}"
    if period == "day":
        return f"{moment:%Y-%m-%d}"
    return f"{moment:%Y-%m-%d %H:00}"


def report(scope: Scope, query: Query) -> Report:
    """The report of `query` for `scope`: its lines, sorted, and a total per currency pair."""
    if query.group_by not in groups_for(scope):
        query.group_by = "period"
    if query.period not in PERIODS:
        query.period = "day"
    supplier_side = scope.is_operator
    grain = grain_for(query)
    column = GROUP_COLUMN[query.group_by]
    level = level_of(scope)
    sums = {name: Sum(name) for name in SUMS if name not in HIDDEN_SUMS[level]}
    grouped = (
        rows_for(scope, query, grain).values(column, "currency", "cost_currency").annotate(**sums).order_by()
    )

    lines: dict[tuple, Line] = {}
    for row in grouped:
        key = row[column]
        if query.group_by == "period":
            key = period_key(key, query.period)
        currency = row["currency"]
        # Calls without a supplier (or its account) cost nothing: in the revenue's currency.
        cost_currency = (row["cost_currency"] or currency) if supplier_side else ""
        line = lines.get((key, currency, cost_currency))
        if line is None:
            line = lines[key, currency, cost_currency] = Line(
                key=key, currency=currency, cost_currency=cost_currency, level=level
            )
        line.add(row)
    _label(query, list(lines.values()))

    totals: dict[tuple, Line] = {}
    for line in lines.values():
        pair = (line.currency, line.cost_currency)
        total = totals.get(pair)
        if total is None:
            total = totals[pair] = Line(
                label=str(_("Total")), currency=line.currency, cost_currency=line.cost_currency, level=level
            )
        total.add({name: getattr(line, name) for name in SUMS})
    ordered = sort_lines(list(lines.values()), query)
    return Report(
        query,
        ordered,
        sorted(totals.values(), key=lambda t: (t.currency, t.cost_currency)),
        supplier_side,
        grain,
    )


def _label(query: Query, lines: list[Line]) -> None:
    ids = {line.key for line in lines if line.key is not None}
    if query.group_by in ("customer", "supplier"):
        names = dict(Peer.objects.filter(pk__in=ids).values_list("pk", "name"))
    elif query.group_by == "node":
        names = dict(Node.objects.filter(pk__in=ids).values_list("pk", "name"))
    else:
        names = {}
    for line in lines:
        if query.group_by == "period":
            line.label = period_label(line.key, query.period)
        elif query.group_by == "destination":
            line.label = line.key or str(_("(unknown)"))
        else:
            line.label = names.get(line.key, str(_("(none)")))


def sort_lines(lines: list[Line], query: Query) -> list[Line]:
    """Sort by `query.sort` (a column, or "label"); periods run in time by default."""
    sort = query.sort
    if sort not in {name for name, *_ in COLUMNS} | {"label"}:
        sort = "label" if query.group_by == "period" else "minutes"
        descending = query.group_by != "period"
    else:
        descending = query.descending
    if sort == "label":
        key = (lambda line: line.key) if query.group_by == "period" else (lambda line: line.label.lower())
        return sorted(lines, key=key, reverse=descending)
    present = [line for line in lines if getattr(line, sort) is not None]
    missing = [line for line in lines if getattr(line, sort) is None]
    return sorted(present, key=lambda line: getattr(line, sort), reverse=descending) + missing


def default_range(days: int = 7) -> tuple[datetime, datetime]:
    """The last `days` local days, today included."""
    today = timezone.now().astimezone(local_zone()).date()
    return local_days(today - timedelta(days=days - 1), today)


def table_rows(report_: Report, scope: Scope) -> list[list]:
    """The report's table as values (the export): the group, the currencies, the columns."""
    names = [name for name, _label in columns_for(scope)]
    rows = []
    for line in [*report_.lines, *report_.totals]:
        row = [line.label, line.currency]
        if report_.supplier_side:
            row.append(line.cost_currency)
        row += [getattr(line, name) for name in names]
        rows.append(row)
    return rows


def table_header(report_: Report, scope: Scope) -> list[str]:
    header = [str(GROUPS[report_.query.group_by]), str(_("Currency"))]
    if report_.supplier_side:
        header.append(str(_("Cost currency")))
    return header + [str(label) for _name, label in columns_for(scope)]


def main_currency(report_: Report) -> str:
    """The revenue currency of most attempts: the one a chart draws money in."""
    return max(report_.totals, key=lambda total: total.attempts).currency if report_.totals else ""


def series(report_: Report, *, top: int = 20) -> dict:
    """A Chart.js configuration of the report: minutes and revenue by line.

    Over periods, in time order; otherwise the `top` lines by minutes. Revenue is drawn for
    the first currency only (two currencies on one axis would add up nothing sensible);
    amounts travel as strings, Chart.js reads them as numbers.
    """
    lines = report_.lines
    if report_.query.group_by == "period":
        lines = sorted(lines, key=lambda line: line.key)
    else:
        lines = sorted(lines, key=lambda line: line.duration_ms, reverse=True)[:top]
    currency = main_currency(report_)
    labels = list(dict.fromkeys(line.label for line in lines))
    minutes = defaultdict(Decimal)
    revenue = defaultdict(Decimal)
    for line in lines:
        minutes[line.label] += line.minutes
        if line.currency == currency:
            revenue[line.label] += line.sell
    return {
        "type": "bar" if report_.query.group_by != "period" or len(labels) < 3 else "line",
        "data": {
            "labels": labels,
            "datasets": [
                {"label": str(_("Minutes")), "data": [str(minutes[x]) for x in labels], "yAxisID": "y"},
                {
                    "label": f"{_('Revenue')} {currency}".strip(),
                    "data": [str(revenue[x]) for x in labels],
                    "yAxisID": "y1",
                },
            ],
        },
        "options": {
            "responsive": True,
            "maintainAspectRatio": False,
            "animation": False,
            "scales": {
                "y": {"beginAtZero": True, "position": "left"},
                "y1": {"beginAtZero": True, "position": "right", "grid": {"drawOnChartArea": False}},
            },
        },
    }
