"""DIDs in the admin: the operator's stock and prices; resellers' customers' numbers and targets."""

from decimal import Decimal

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from apps.core.admin import (
    CHANGE,
    EVERYTHING,
    VIEW,
    ConfirmForm,
    ObjectTool,
    ScopedInline,
    ScopedModelAdmin,
    ScopedRelatedFilter,
    form_changes,
    form_values,
    service_errors,
)
from apps.core.models import digits_validator
from apps.core.money import MAX_AMOUNT, MAX_PRICE
from apps.dids import services
from apps.dids.models import Did, DidTarget

PRICE_BOUNDS = {
    "buy_monthly": MAX_AMOUNT,
    "sell_monthly": MAX_AMOUNT,
    "buy_per_minute": MAX_PRICE,
    "sell_per_minute": MAX_PRICE,
}


class InStockFilter(admin.SimpleListFilter):
    title = "assignment"
    parameter_name = "assigned"

    def lookups(self, request, model_admin):
        return [("yes", "On a customer"), ("no", "In stock")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(customer__isnull=self.value() == "no")
        return queryset


class DidTargetInline(ScopedInline):
    """The failover list, written whole by set_targets when any row of it changed."""

    model = DidTarget
    reseller_can = EVERYTHING
    fields = ("position", "sip_account", "gateway", "setup_timeout")
    verbose_name = "target"
    verbose_name_plural = "targets (tried by position, lowest first)"

    def get_formset(self, request, obj=None, **kwargs):
        # The choices are the DID's customer's own accounts and gateways (DidTarget.clean):
        # formfield_for_foreignkey, called while the formset is built, reads it from here.
        request._did_customer_id = obj.customer_id if obj is not None else None
        return super().get_formset(request, obj, **kwargs)

    def scoped_choices(self, db_field, request):
        choices = super().scoped_choices(db_field, request)
        return choices.filter(peer=getattr(request, "_did_customer_id", None)).select_related("peer")

    def save_formset_via_services(self, request, formset) -> None:
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        deleted = set(formset.deleted_forms) if formset.can_delete else set()
        if not deleted and not any(form.has_changed() for form in formset.forms):
            return
        kept = [
            form
            for form in formset.forms
            if form not in deleted and (form.has_changed() or not form.instance._state.adding)
        ]
        kept.sort(key=lambda form: form.cleaned_data.get("position") or 0)  # stable: ties keep form order
        targets = [
            (
                form.cleaned_data.get("sip_account") or form.cleaned_data.get("gateway"),
                form.cleaned_data.get("setup_timeout"),
            )
            for form in kept
        ]
        with service_errors(request):
            services.set_targets(formset.instance, targets, actor=self.scope(request))


def release(admin_, request, did, data):
    services.release_did(did, actor=admin_.scope(request))
    return f"{did} is back in stock: its calls are refused and its customer's monthly fee ends."


@admin.register(Did)
class DidAdmin(ScopedModelAdmin):
    """Only the operator adds and deletes numbers; resellers see and route their customers'."""

    operator_can = EVERYTHING
    reseller_can = frozenset({VIEW, CHANGE})
    # What a number costs us and who delivers it are the operator's.
    operator_only_fields = ("supplier", "buy_monthly", "buy_per_minute", "buy_fee_link")
    list_display = (
        "__str__",
        "size",
        "supplier",
        "customer",
        "targets_summary",
        "sell_monthly",
        "sell_per_minute",
        "buy_monthly",
        "buy_per_minute",
        "enabled",
    )
    list_select_related = ("customer", "supplier")
    list_filter = (
        "enabled",
        InStockFilter,
        ("customer", ScopedRelatedFilter.where(lambda peers: peers.customers())),
        ("supplier", ScopedRelatedFilter.where(lambda peers: peers.suppliers())),
    )
    search_fields = ("number", "last_number", "customer__name", "description")
    choice_filters = {
        "customer": lambda peers: peers.customers(),
        "supplier": lambda peers: peers.suppliers(),
    }
    object_tools = (
        ObjectTool(
            "release",
            "Release to stock",
            ConfirmForm,
            release,
            permission=CHANGE,
            show=lambda did: did.customer_id is not None,
            help="Its calls are refused from now on, its targets are removed and its customer's "
            "monthly fee ends (a month already charged stays charged).",
        ),
    )

    def get_queryset(self, request):
        return (
            super().get_queryset(request).prefetch_related("targets__sip_account", "targets__gateway__peer")
        )

    def base_fieldsets(self, request, obj=None):
        fieldsets = [
            (
                None,
                {
                    "fields": (
                        "number",
                        "last_number",
                        "supplier",
                        "customer",
                        "hunting",
                        "enabled",
                        "description",
                    )
                },
            ),
            (
                "Prices",
                {
                    "fields": (
                        ("sell_monthly", "sell_per_minute"),
                        ("buy_monthly", "buy_per_minute"),
                        ("min_seconds", "increment_seconds"),
                    )
                },
            ),
        ]
        if obj is not None:
            fieldsets.append(("Monthly fees", {"fields": ("sell_fee_link", "buy_fee_link")}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        if self.scope(request).is_operator:
            return ("sell_fee_link", "buy_fee_link")
        # Resellers set what their customers pay, who holds the number, and where it rings.
        return (
            "number",
            "last_number",
            "enabled",
            "description",
            "min_seconds",
            "increment_seconds",
            "sell_fee_link",
        )

    def get_inlines(self, request, obj):
        # Targets are the customer's accounts and gateways: a DID in stock has none.
        if obj is None or obj.customer_id is None:
            return ()
        posted = request.POST.get("customer") if request.method == "POST" else None
        if posted is not None and posted != str(obj.customer_id):
            # The DID changes hands in this POST: its targets stay with the customer it
            # leaves (assign_did and release_did drop them); the new ones are set after.
            return ()
        return (DidTargetInline,)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name in ("number", "last_number"):
            # Checked by the form field itself: Did.clean() reads the numbers as integers.
            kwargs["validators"] = [digits_validator]
        if db_field.name in PRICE_BOUNDS:
            # The service's bounds (apps.core.money), said at once.
            kwargs["min_value"], kwargs["max_value"] = Decimal(0), PRICE_BOUNDS[db_field.name]
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term.isdigit() and len(term) <= 32:
            # A number inside a block finds the block.
            queryset |= self.get_queryset(request).covering(term)
        return queryset, may_have_duplicates

    # -- columns and read-only fields --

    @admin.display(description="targets")
    def targets_summary(self, did):
        targets = list(did.targets.all())
        return ", ".join(str(target) for target in targets) or "-"

    @admin.display(description="customer's fee")
    def sell_fee_link(self, did):
        return _fee_link(did.sell_fee_id, did.sell_fee)

    @admin.display(description="supplier's fee")
    def buy_fee_link(self, did):
        return _fee_link(did.buy_fee_id, did.buy_fee)

    # -- writes --

    def create_via_service(self, request, form):
        return services.create_did(
            actor=self.scope(request),
            customer=form.cleaned_data.get("customer"),
            **form_values(form, exclude=("customer",)),
        )

    def update_via_service(self, request, obj, form):
        actor = self.scope(request)
        changes = form_changes(form, exclude=("customer",))
        if changes:
            obj = services.update_did(obj, actor=actor, changes=changes)
        if "customer" in form.changed_data:
            customer = form.cleaned_data["customer"]
            if customer is None:
                services.release_did(obj, actor=actor)
            else:
                services.assign_did(obj, customer, actor=actor)

    def delete_via_service(self, request, obj):
        services.delete_did(obj, actor=self.scope(request))


def _fee_link(fee_id, fee):
    if fee_id is None:
        return "-"
    url = reverse("admin:billing_recurringfee_change", args=[fee_id])
    ends = f", ends {fee.ends_on}" if fee.ends_on else ""
    return format_html('<a href="{}">{}</a>{}', url, fee, ends)
