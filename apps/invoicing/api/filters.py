import django_filters

from apps.billing.models import Account
from apps.core.api import FilterSet, IdFilter, MomentFilter, visible
from apps.invoicing.models import Invoice
from apps.tenancy.scope import request_scope


def _invoices(request):
    # A customer never learns of a draft, not even by naming its id in a filter.
    if request is None:
        return Invoice.objects.none()
    scope = request_scope(request)
    invoices = Invoice.objects.visible_to(scope)
    return invoices.issued() if scope.is_customer else invoices


class InvoiceFilter(FilterSet):
    account = IdFilter(queryset=visible(Account))
    corrects = IdFilter(queryset=_invoices, model=Invoice, label="The invoice a credit note corrects")
    period_from = django_filters.DateFilter(
        field_name="period_end", lookup_expr="gte", label="Periods that end on or after this day"
    )
    period_to = django_filters.DateFilter(
        field_name="period_start", lookup_expr="lte", label="Periods that start on or before this day"
    )
    issued_after = MomentFilter(field_name="issued_at", lookup_expr="gte", label="Issued at or after")
    issued_before = MomentFilter(field_name="issued_at", lookup_expr="lt", label="Issued before")

    class Meta:
        model = Invoice
        fields = [
            "account",
            "state",
            "kind",
            "number",
            "period_start",
            "period_from",
            "period_to",
            "corrects",
            "issued_after",
            "issued_before",
        ]
