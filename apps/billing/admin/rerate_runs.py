"""Re-rating runs in the admin: requested here, run by a worker (apps.billing.services.rerating),
shown with what they changed; never edited."""

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse

from apps.billing.models import Account, RerateLine, RerateRun
from apps.billing.services import rerating
from apps.core.admin import (
    ADD,
    VIEW,
    ScopedModelAdmin,
    ScopedModelForm,
    ScopedRelatedFilter,
)

# --- re-rating -------------------------------------------------------------------------------


class RerateRunForm(ScopedModelForm):
    class Meta:
        model = RerateRun
        fields = ("period_start", "period_end", "peer", "table")
        help_texts = {
            "period_start": "Calls set up at or after this moment.",
            "period_end": "Calls set up before this moment.",
            "peer": "Only this peer's calls, on its side; empty: every peer you manage.",
            "table": "Only calls priced by this price list; empty: every price list.",
        }


@admin.register(RerateRun)
class RerateRunAdmin(ScopedModelAdmin):
    """Runs are requested here and run by a worker; what they changed is shown, never edited."""

    operator_can = frozenset({VIEW, ADD})
    reseller_can = frozenset({VIEW, ADD})
    operator_only_fields = ("reseller",)
    add_form = RerateRunForm
    change_form_template = "admin/billing/reraterun/change_form.html"
    list_display = (
        "created_at",
        "period",
        "peer",
        "table",
        "reseller",
        "state",
        "examined",
        "changed",
        "actor_label",
    )
    list_select_related = ("peer", "table", "reseller")
    list_filter = ("state", ("reseller", ScopedRelatedFilter))
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = (
        ("period_start", "period_end"),
        ("peer", "table"),
        "reseller",
        ("state", "examined", "changed"),
        "error",
        ("actor_label", "created_at", "started_at", "finished_at"),
    )

    def get_fields(self, request, obj=None):
        return list(RerateRunForm.Meta.fields) if obj is None else super().get_fields(request, obj)

    @admin.display(description="period", ordering="period_start")
    def period(self, run):
        return f"{run.period_start:%Y-%m-%d %H:%M} → {run.period_end:%Y-%m-%d %H:%M}"

    def create_via_service(self, request, form):
        data = form.cleaned_data
        return rerating.request_rerate(
            actor=self.scope(request),
            period_start=data["period_start"],
            period_end=data["period_end"],
            peer=data.get("peer"),
            table=data.get("table"),
        )

    def response_add(self, request, obj, post_url_continue=None):
        if "_addanother" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(
            request, f"{obj} is queued; a worker re-prices the calls and posts the differences."
        )
        return HttpResponseRedirect(reverse(self._url_name("change"), args=[obj.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and not add:
            # The run's lines on accounts the user may see: a run is its owner's, but the
            # lines are filtered again rather than trusted to follow.
            lines = (
                RerateLine.objects.filter(
                    run=obj, account__in=Account.objects.visible_to(self.scope(request)).values("pk")
                )
                .select_related("account__peer")
                .order_by("account__peer__name", "pk")
            )
            lines = list(lines)
            currencies = {line.account.currency for line in lines}
            # Sums only make sense in one currency; an operator's run may span several.
            if len(currencies) == 1:
                before, after = sum(line.before for line in lines), sum(line.after for line in lines)
                context["totals"] = {
                    "calls": sum(line.calls for line in lines),
                    "before": before,
                    "after": after,
                    "difference": after - before,
                    "currency": currencies.pop(),
                }
            context["lines"] = lines
        return super().render_change_form(request, context, add, change, form_url, obj)
