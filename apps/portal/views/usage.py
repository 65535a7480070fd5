"""Usage: the customer's calls, minutes and spend per day (or hour, or month) and by
destination over a range, charted, from the reports' rollups (apps.reports.queries) in the
customer's cut: no supplier, no cost, no node."""

from collections import defaultdict
from dataclasses import replace
from decimal import Decimal

from django.shortcuts import render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from apps.core.exports import FORMATS, export_response
from apps.portal.views.common import context, customer, customer_required
from apps.reports import queries
from apps.reports.forms import ReportForm
from apps.tenancy.scope import Scope

# Destinations drawn in the chart; the table lists them all.
TOP_DESTINATIONS = 15


def usage_chart(report: queries.Report, *, top: int | None = None) -> dict:
    """Calls and minutes (left axis) and spend (right axis) per line of `report`, as a
    Chart.js configuration. Spend is drawn in the account's currency; amounts as strings."""
    lines = report.lines
    if report.query.group_by == "period":
        lines = sorted(lines, key=lambda line: line.key)
    else:
        lines = sorted(lines, key=lambda line: line.duration_ms, reverse=True)[:top]
    currency = queries.main_currency(report)
    labels = list(dict.fromkeys(line.label for line in lines))
    calls, minutes, spend = defaultdict(int), defaultdict(Decimal), defaultdict(Decimal)
    for line in lines:
        calls[line.label] += line.attempts
        minutes[line.label] += line.minutes
        if line.currency == currency:
            spend[line.label] += line.sell
    return {
        "type": "bar",
        "data": {
            "labels": labels,
            "datasets": [
                {"label": _("Calls"), "data": [calls[x] for x in labels], "yAxisID": "y"},
                {"label": _("Minutes"), "data": [str(minutes[x]) for x in labels], "yAxisID": "y"},
                {
                    "label": f"{_('Spend')} {currency}".strip(),
                    "data": [str(spend[x]) for x in labels],
                    "yAxisID": "y1",
                    "type": "line",
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


@never_cache
@customer_required
def usage(request, scope: Scope):
    """Charts and tables of the customer's traffic; ?format=csv|xlsx exports a table
    (&group_by=period, the default, or destination)."""
    peer = customer(scope)
    form = ReportForm(request.GET, scope=scope, groups=("period", "destination"))
    page = context(peer, nav="usage", form=form, columns=queries.columns_for(scope), formats=FORMATS)
    if form.is_valid():
        query = form.query()
        fmt = request.GET.get("format")
        by_period = queries.report(scope, replace(query, group_by="period", sort="label", descending=False))
        by_destination = queries.report(
            scope, replace(query, group_by="destination", sort="", descending=False)
        )
        if fmt in FORMATS:
            chosen = by_destination if form.cleaned_data["group_by"] == "destination" else by_period
            data = form.cleaned_data
            return export_response(
                request,
                fmt,
                filename=f"usage-{chosen.query.group_by}-{data['since']}-{data['until']}",
                header=queries.table_header(chosen, scope),
                chunks=[queries.table_rows(chosen, scope)],
                title=_("Usage"),
            )
        params = request.GET.copy()
        params.pop("format", None)
        params.pop("group_by", None)
        page.update(
            by_period=by_period,
            by_destination=by_destination,
            period_chart=usage_chart(by_period),
            destination_chart=usage_chart(by_destination, top=TOP_DESTINATIONS),
            query=params.urlencode(),
            period_name=str(queries.PERIODS[query.period]).lower(),
        )
    template = "portal/usage_results.html" if getattr(request, "htmx", False) else "portal/usage.html"
    return render(request, template, page)


urlpatterns = [path("usage/", usage, name="usage")]
