"""Bundles in the admin: the operator's and each reseller's catalogue, subscriptions and usage.

A reseller's staff see and edit their own catalogue and their customers' subscriptions; the
operator all. Bundles are written by create_bundle and update_bundle, subscriptions by
subscribe and end_subscription (apps.bundles.services.catalogue); none is ever deleted,
since fees and rated calls name them. Usage is written by the rater and call control: read
only here.
"""

from django import forms
from django.contrib import admin

from apps.bundles import periods
from apps.bundles.models import Bundle, Subscription, Usage
from apps.bundles.services import catalogue
from apps.core.admin import (
    ADD,
    CHANGE,
    VIEW,
    ObjectTool,
    ReadOnlyModelAdmin,
    ScopedModelAdmin,
    ScopedRelatedFilter,
    form_changes,
    form_values,
)
from apps.core.formatting import format_total
from apps.core.money import MAX_AMOUNT

BUNDLE_FIELDS = (
    "reseller",
    "name",
    "kind",
    "minutes",
    "money",
    "period",
    "price",
    "prefixes",
    "destinations",
)
SUBSCRIBE_FIELDS = ("account", "bundle", "starts_on", "ends_on")


def _owner(reseller) -> str:
    return str(reseller) if reseller is not None else "operator"


@admin.register(Bundle)
class BundleAdmin(ScopedModelAdmin):
    # Never deleted: subscriptions and their fees name the bundle. A new offer is a new bundle.
    operator_can = frozenset({VIEW, ADD, CHANGE})
    reseller_can = frozenset({VIEW, ADD, CHANGE})
    owner_field = "reseller"
    operator_only_fields = ("reseller",)
    list_display = ("name", "reseller", "kind", "allowance_shown", "period", "price", "covers")
    list_select_related = ("reseller",)
    list_filter = ("kind", "period", ("reseller", ScopedRelatedFilter))
    search_fields = ("name", "prefixes", "destinations")
    fieldsets = (
        (None, {"fields": ("reseller", "name", "price")}),
        ("What each period includes", {"fields": ("kind", "minutes", "money", "period")}),
        ("Calls it covers", {"fields": ("prefixes", "destinations")}),
    )

    def get_readonly_fields(self, request, obj=None):
        # The owner is fixed once made: its customers' subscriptions depend on it.
        return () if obj is None else ("reseller",)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name in ("money", "price"):
            kwargs["max_value"] = MAX_AMOUNT  # the service's bound (apps.core.money), said at once
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "reseller" and field is not None:
            field.help_text = "Empty: the operator's catalogue, for the operator's own customers."
        return field

    @admin.display(description="included per period")
    def allowance_shown(self, bundle):
        if bundle.kind == Bundle.Kind.MINUTES:
            return f"{bundle.minutes} min"
        return format_total(bundle.money)

    @admin.display(description="covers")
    def covers(self, bundle):
        names = [*bundle.prefix_list(), *bundle.destination_list()]
        return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")

    def create_via_service(self, request, form):
        values = form_values(form, exclude=("reseller",))
        return catalogue.create_bundle(
            actor=self.scope(request), reseller=form.cleaned_data.get("reseller"), **values
        )

    def update_via_service(self, request, obj, form):
        changes = form_changes(form, exclude=("reseller",))
        if changes:
            catalogue.update_bundle(obj, actor=self.scope(request), changes=changes)


class EndSubscriptionForm(forms.Form):
    ends_on = forms.DateField(
        label="Last day included",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="On the customer's clock. The bundle's fee ends with it; the period it ends in "
        "includes only its share of days.",
    )


def end_subscription(admin_, request, subscription, data):
    catalogue.end_subscription(subscription, actor=admin_.scope(request), ends_on=data["ends_on"])
    return f"{subscription.bundle} of {subscription.account} ends on {data['ends_on']}."


def _this_period(name: str, description: str):
    @admin.display(description=description)
    def shown(self, subscription):
        usage = getattr(subscription, "this_period", None)
        return "—" if usage is None else getattr(periods, name)(usage)

    return shown


@admin.register(Subscription)
class SubscriptionAdmin(ScopedModelAdmin):
    # Read only once made: a subscription is ended by its tool, never changed nor deleted
    # (its fee and its periods' usage name it).
    operator_can = frozenset({VIEW, ADD, CHANGE})
    reseller_can = frozenset({VIEW, ADD, CHANGE})
    operator_only_fields = ("owner", "account__peer__reseller")
    list_display = (
        "account",
        "bundle",
        "owner",
        "starts_on",
        "ends_on",
        "period_shown",
        "included_shown",
        "used_shown",
        "left_shown",
    )
    list_select_related = ("account__peer__reseller", "bundle")
    list_filter = (
        "bundle__kind",
        ("bundle", ScopedRelatedFilter),
        ("account__peer__reseller", ScopedRelatedFilter),
    )
    search_fields = ("account__peer__name", "bundle__name")
    choice_filters = {"account": lambda accounts: accounts.filter(peer__isnull=False).select_related("peer")}
    object_tools = (
        ObjectTool(
            "end",
            "End subscription",
            EndSubscriptionForm,
            end_subscription,
            show=lambda subscription: subscription.ends_on is None,
            help="Sets the last day the bundle is included; its fee stops being charged after it.",
        ),
    )

    def has_change_permission(self, request, obj=None):
        return False  # the tool ends it; allows(CHANGE) still lets the tool run

    def get_fields(self, request, obj=None):
        if obj is None:
            return list(SUBSCRIBE_FIELDS)
        return [*SUBSCRIBE_FIELDS, "fee", "period_shown", "included_shown", "used_shown", "left_shown"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return self.get_fields(request, obj)

    def get_changelist_instance(self, request):
        # This period of every row on the page, in one query (not one per row).
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)  # evaluated once: the page iterates these rows
        current = periods.current_usages(rows)
        for row in rows:
            row.this_period = current[row.pk]
        return changelist

    def get_object(self, request, object_id, from_field=None):
        subscription = super().get_object(request, object_id, from_field)
        if subscription is not None:
            subscription.this_period = periods.current_usages([subscription])[subscription.pk]
        return subscription

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account__peer__reseller", "bundle", "fee")

    @admin.display(description="owner", ordering="account__peer__reseller__name")
    def owner(self, subscription):
        return _owner(subscription.account.peer.reseller)

    @admin.display(description="this period")
    def period_shown(self, subscription):
        usage = getattr(subscription, "this_period", None)
        if usage is None:
            return "not in force today"
        return f"{usage.period_start:%Y-%m-%d} to {usage.period_end:%Y-%m-%d}"

    included_shown = _this_period("included", "included")
    used_shown = _this_period("used", "used")
    left_shown = _this_period("left", "left")

    def create_via_service(self, request, form):
        data = form.cleaned_data
        return catalogue.subscribe(
            data["account"],
            data["bundle"],
            actor=self.scope(request),
            starts_on=data["starts_on"],
            ends_on=data.get("ends_on"),
        )


@admin.register(Usage)
class UsageAdmin(ReadOnlyModelAdmin):
    """Each period of each subscription: what it includes and what calls used of it."""

    operator_only_fields = ("subscription__account__peer__reseller",)
    list_display = ("subscription_shown", "account", "period", "included", "used", "left", "calls")
    list_select_related = ("subscription__bundle", "subscription__account__peer")
    list_filter = (
        "subscription__bundle__kind",
        ("subscription__bundle", ScopedRelatedFilter),
        ("subscription__account__peer__reseller", ScopedRelatedFilter),
    )
    search_fields = ("subscription__account__peer__name", "subscription__bundle__name")
    fields = ("subscription", "period", "included", "used", "left", "calls")
    readonly_fields = fields

    @admin.display(description="bundle", ordering="subscription__bundle__name")
    def subscription_shown(self, usage):
        return usage.subscription.bundle

    @admin.display(description="account", ordering="subscription__account__peer__name")
    def account(self, usage):
        return usage.subscription.account

    @admin.display(description="period", ordering="period_start")
    def period(self, usage):
        return f"{usage.period_start:%Y-%m-%d} to {usage.period_end:%Y-%m-%d}"

    @admin.display(description="included")
    def included(self, usage):
        return periods.included(usage)

    @admin.display(description="used")
    def used(self, usage):
        return periods.used(usage)

    @admin.display(description="left")
    def left(self, usage):
        return periods.left(usage)
