"""Controllers and alerts in the admin: the rules people set, and every episode with its undo.

Reseller staff write controllers of their own (which watch only their customers) and see the
alerts about their customers; the operator sees and writes everything. Alerts are written by
the controllers only: here they are read, filtered, and undone by a person (one click with an
optional reason, through services.undo_alert, audited), never edited.
"""

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import escape, format_html

from apps.core.admin import (
    EVERYTHING,
    VIEW,
    ObjectTool,
    ReadOnlyModelAdmin,
    ScopedModelAdmin,
    ScopedRelatedFilter,
    form_changes,
    form_values,
)
from apps.core.errors import DomainError
from apps.fraud import rules, services
from apps.fraud.models import Alert, Controller


def _kinds_help() -> str:
    """The model's own table of which fields each kind reads, shown above those fields."""
    doc = Controller.__doc__
    table = doc[doc.index("termination ") : doc.index("Every kind uses")]
    lines = "\n".join(line.removeprefix("    ") for line in table.rstrip().splitlines())
    return f'<pre style="white-space: pre-wrap">{escape(lines)}</pre>'


KINDS_HELP = _kinds_help()


class UndoForm(forms.Form):
    reason = forms.CharField(
        max_length=200, required=False, help_text="Optional; recorded with the undo in the audit trail."
    )


def undo(admin_, request, alert, data):
    services.undo_alert(alert, actor=admin_.scope(request), reason=data["reason"])
    return f"Alert #{alert.pk} is over: {alert.get_effect_display().lower()} lifted."


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("ended", "Ended"), ("undone", "Undone by a person")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.open()
        if self.value() == "ended":
            return queryset.filter(ended_at__isnull=False)
        if self.value() == "undone":
            return queryset.filter(undone_at__isnull=False)
        return queryset


@admin.register(Controller)
class ControllerAdmin(ScopedModelAdmin):
    """The operator's controllers watch everything; a reseller's watch its own customers."""

    operator_can = EVERYTHING
    reseller_can = EVERYTHING
    owner_field = "reseller"
    operator_only_fields = ("reseller",)
    list_display = (
        "name",
        "kind",
        "metric",
        "reseller",
        "peer",
        "threshold",
        "min_count",
        "window_minutes",
        "action",
        "block_minutes",
        "enabled",
    )
    list_filter = ("kind", "action", "enabled", ("reseller", ScopedRelatedFilter))
    list_select_related = ("reseller", "peer")
    search_fields = ("name",)

    def base_fieldsets(self, request, obj=None):
        return [
            (None, {"fields": ("name", "kind", "metric", "reseller", "peer", "enabled", "notify")}),
            (
                "What it measures",
                {
                    "fields": (
                        ("window_minutes", "min_count"),
                        ("threshold", "floor"),
                        ("per_destination", "short_seconds"),
                        ("baseline_days", "account_limit", "cluster_wide"),
                    ),
                    "description": KINDS_HELP,
                },
            ),
            ("What it does", {"fields": ("action", "block_minutes", ("trial_share", "trial_minutes"))}),
        ]

    def get_readonly_fields(self, request, obj=None):
        # The alerts a controller raised are of its kind and owner: both fixed once created.
        return () if obj is None else ("kind", "reseller")

    def create_via_service(self, request, form):
        values = form_values(form)
        reseller_id = values.pop("reseller_id", None)
        return rules.create_controller(actor=self.scope(request), reseller_id=reseller_id, **values)

    def update_via_service(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            rules.update_controller(obj, actor=self.scope(request), changes=changes)

    def delete_via_service(self, request, obj):
        rules.delete_controller(obj, actor=self.scope(request))


@admin.register(Alert)
class AlertAdmin(ReadOnlyModelAdmin):
    """Every episode, newest first; an open one has an Undo button (and a bulk action)."""

    list_display = (
        "id",
        "started_at",
        "kind",
        "effect",
        "subject",
        "measure",
        "state",
        "reseller",
    )
    list_display_links = ("id", "subject")
    list_filter = ("kind", "effect", StateFilter, ("reseller", ScopedRelatedFilter))
    list_select_related = ("reseller",)
    date_hierarchy = "started_at"
    search_fields = ("subject", "number", "source_ip", "username")
    operator_only_fields = ("reseller",)
    actions = ("undo_selected",)
    fieldsets = [
        (None, {"fields": ("kind", "effect", "controller_name", "subject", "reseller", "state")}),
        (
            "Subject",
            {"fields": ("peer", "destination", "number", "source_ip", "username", "sip_account")},
        ),
        ("Measure", {"fields": ("measured", "threshold", "attempts", "window_minutes", "detail")}),
        (
            "Episode",
            {
                "fields": (
                    "started_at",
                    "last_seen_at",
                    "ends_at",
                    ("trial_until", "trial_share"),
                    "ended_at",
                    ("undone_at", "undone_by", "undone_reason"),
                    "emailed_at",
                )
            },
        ),
    ]
    object_tools = (
        ObjectTool(
            "undo",
            "Undo",
            UndoForm,
            undo,
            permission=VIEW,
            show=lambda alert: alert.ended_at is None,
            help="Ends this episode now and lifts its action: the route is admitted, the customer "
            "resumed, the number or address let through, the account or login unlocked. The "
            "controller may raise a new alert if the subject offends again.",
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        return [name for name in _flat(self.fieldsets) if name not in self.hidden_fields(request)]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("reseller", "controller", "peer", "sip_account", "undone_by")
        )

    @admin.display(description="controller")
    def controller_name(self, alert):
        return alert.controller.name if alert.controller_id else "(deleted)"

    @admin.display(description="measured")
    def measure(self, alert):
        if alert.threshold is None:
            return _number(alert.measured)
        return f"{_number(alert.measured)} vs {_number(alert.threshold)}"

    @admin.display(description="state")
    def state(self, alert):
        if alert.undone_at is not None:
            return f"undone {timezone.localtime(alert.undone_at):%Y-%m-%d %H:%M}"
        if alert.ended_at is not None:
            return f"ended {timezone.localtime(alert.ended_at):%Y-%m-%d %H:%M}"
        if alert.ends_at is None:
            return format_html("<strong>{}</strong>", "in force until undone")
        return format_html("<strong>in force until {}</strong>", f"{timezone.localtime(alert.ends_at):%H:%M}")

    @admin.action(description="Undo selected alerts", permissions=["view"])
    def undo_selected(self, request, queryset):
        form, page = self.confirm_action(
            request, queryset.open(), UndoForm, title="Undo alerts", action="undo_selected"
        )
        if form is None:
            return page
        actor, done = self.scope(request), 0
        for alert in queryset.open():
            try:
                services.undo_alert(alert, actor=actor, reason=form.cleaned_data["reason"])
            except DomainError as exc:
                self.message_user(request, f"{alert}: {exc.message}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} alert(s) undone.", messages.SUCCESS)
        return None


def _flat(fieldsets):
    for _, options in fieldsets:
        for entry in options["fields"]:
            yield from entry if isinstance(entry, tuple) else (entry,)


def _number(value) -> str:
    return f"{value.normalize():f}" if value is not None else "-"
