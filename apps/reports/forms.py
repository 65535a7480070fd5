"""The report form: what the admin's report page and the portal's Usage page ask."""

from datetime import timedelta

from django import forms
from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.nodes.models import Node
from apps.peers.models import Peer
from apps.reports import queries
from apps.reports.rollups import local_zone
from apps.tenancy.scope import Scope

# The longest range a page reports: a year of day rows, or (hour periods) a month of hours.
MAX_DAYS = 366
MAX_HOUR_DAYS = 31
# The range a page shows first: the last week, today included.
DEFAULT_DAYS = 7


class ReportForm(forms.Form):
    """Range, grouping and filters; the choices a scope may not use are not offered."""

    since = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    group_by = forms.ChoiceField(label=_("Group by"), required=False)
    period = forms.ChoiceField(label=_("Period"), required=False, choices=list(queries.PERIODS.items()))
    customer = forms.ModelChoiceField(label=_("Customer"), queryset=Peer.objects.none(), required=False)
    supplier = forms.ModelChoiceField(label=_("Supplier"), queryset=Peer.objects.none(), required=False)
    destination = forms.CharField(label=_("Destination"), required=False, max_length=100)
    node = forms.ModelChoiceField(label=_("Node"), queryset=Node.objects.none(), required=False)
    sort = forms.CharField(required=False, widget=forms.HiddenInput)
    desc = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(self, data, *, scope: Scope, groups=None, **kwargs):
        # Always bound, the defaults filled in: the page shows the range and period it reports.
        data = data.copy() if data is not None else QueryDict(mutable=True)
        today = timezone.now().astimezone(local_zone()).date()
        if not data.get("until"):
            data["until"] = today.isoformat()
        if not data.get("since"):
            data["since"] = (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        if not data.get("period"):
            data["period"] = "day"
        super().__init__(data, **kwargs)
        self.scope = scope
        allowed = [g for g in (groups or queries.GROUPS) if g in queries.groups_for(scope)]
        self.fields["group_by"].choices = [(g, queries.GROUPS[g]) for g in allowed]
        if scope.is_customer:
            del self.fields["customer"]
        else:
            self.fields["customer"].queryset = Peer.objects.visible_to(scope).customers().order_by("name")
        if scope.is_operator:
            self.fields["supplier"].queryset = Peer.objects.suppliers().order_by("name")
            self.fields["node"].queryset = Node.objects.order_by("name")
        else:
            # The operator's side: not asked, not read (queries.rows_for ignores it too).
            del self.fields["supplier"], self.fields["node"]

    def clean(self):
        data = super().clean()
        until, since = data.get("until"), data.get("since")
        if until is None or since is None:
            return data  # the field says what is wrong
        if since > until:
            raise forms.ValidationError(_("The range ends before it starts."))
        period = data.get("period") or "day"
        longest = MAX_HOUR_DAYS if period == "hour" else MAX_DAYS
        if (until - since).days >= longest:
            raise forms.ValidationError(_("Choose at most %(days)s days.") % {"days": longest})
        data["since"], data["until"], data["period"] = since, until, period
        data["group_by"] = data.get("group_by") or self.fields["group_by"].choices[0][0]
        return data

    def query(self) -> queries.Query:
        """The valid form as a report query (call after is_valid())."""
        data = self.cleaned_data
        start, end = queries.local_days(data["since"], data["until"])
        return queries.Query(
            start=start,
            end=end,
            group_by=data["group_by"],
            period=data["period"],
            customer_id=getattr(data.get("customer"), "pk", None),
            supplier_id=getattr(data.get("supplier"), "pk", None),
            destination=data.get("destination") or "",
            node_id=getattr(data.get("node"), "pk", None),
            sort=data.get("sort") or "",
            descending=bool(data.get("desc")),
        )
