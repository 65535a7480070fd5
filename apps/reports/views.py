"""The admin's traffic report (operator and reseller staff): a form, a chart, a table with
totals, and the table as CSV or XLSX."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.utils.translation import gettext as _

from apps.core.exports import FORMATS, export_response
from apps.reports import queries
from apps.reports.forms import ReportForm
from apps.tenancy.scope import request_scope


def sort_links(request, report, scope) -> list[dict]:
    """The table's headers, each a link that sorts by it (again: the other way)."""
    current, descending = report.query.sort, report.query.descending
    links = []
    for name, label in [("label", queries.GROUPS[report.query.group_by]), *queries.columns_for(scope)]:
        params = request.GET.copy()
        params.pop("format", None)
        params["sort"] = name
        params["desc"] = "" if (name == current and descending) else "1"
        if name != current and name == "label":
            params["desc"] = ""
        links.append(
            {
                "name": name,
                "label": label,
                "query": params.urlencode(),
                "sorted": name == current,
                "descending": descending,
                "money": name in queries.MONEY_COLUMNS,
            }
        )
    return links


def report_view(request):
    scope = request_scope(request)
    if not (scope.is_operator or scope.is_reseller):
        raise PermissionDenied
    form = ReportForm(request.GET, scope=scope)
    report = None
    if form.is_valid():
        report = queries.report(scope, form.query())
        fmt = request.GET.get("format")
        if fmt in FORMATS:
            data = form.cleaned_data
            return export_response(
                request,
                fmt,
                filename=f"traffic-{report.query.group_by}-{data['since']}-{data['until']}",
                header=queries.table_header(report, scope),
                chunks=[queries.table_rows(report, scope)],
                title=_("Traffic"),
            )
    params = request.GET.copy()
    params.pop("format", None)
    context = {
        **admin.site.each_context(request),
        "title": _("Traffic report"),
        "form": form,
        "report": report,
        "columns": queries.columns_for(scope),
        "headers": sort_links(request, report, scope) if report else [],
        "chart": queries.series(report) if report else None,
        "query": params.urlencode(),
        "formats": FORMATS,
    }
    return render(request, "admin/reports/report.html", context)
