"""Recurring fees in the admin: resellers manage their customers' fees, the task posts them."""

from django import forms
from django.contrib import admin

from apps.billing.models import RecurringFee
from apps.billing.services import fees
from apps.core.admin import (
    ADD,
    CHANGE,
    VIEW,
    ObjectTool,
    ScopedModelAdmin,
    ScopedRelatedFilter,
    form_changes,
    form_values,
)
from apps.core.money import MAX_AMOUNT

ADD_FIELDS = ("account", "name", "amount", "period", "starts_on", "ends_on", "prorate")


class EndFeeForm(forms.Form):
    ends_on = forms.DateField(
        label="Last day charged",
        help_text="A day already charged cannot be taken back here; refund it with an adjustment.",
    )


def end_fee(admin_, request, fee, data):
    fees.end_fee(fee, actor=admin_.scope(request), ends_on=data["ends_on"])
    return f"{fee.name} ends on {data['ends_on']}; no period after it will be charged."


@admin.register(RecurringFee)
class RecurringFeeAdmin(ScopedModelAdmin):
    # Fees are never deleted: their periods on the ledger name them. They are ended.
    operator_can = frozenset({VIEW, ADD, CHANGE})
    reseller_can = frozenset({VIEW, ADD, CHANGE})
    operator_only_fields = ("owner", "account__peer__reseller")
    list_display = (
        "name",
        "account",
        "owner",
        "amount",
        "period",
        "starts_on",
        "ends_on",
        "prorate",
        "enabled",
        "last_posted",
    )
    list_select_related = ("account__peer__reseller",)
    list_filter = ("period", "enabled", "prorate", ("account__peer__reseller", ScopedRelatedFilter))
    search_fields = ("name", "account__peer__name")
    object_tools = (
        ObjectTool(
            "end",
            "End fee",
            EndFeeForm,
            end_fee,
            show=lambda fee: fee.ends_on is None,
            help="Sets the last day charged; the periods already charged stay on the ledger.",
        ),
    )

    def get_queryset(self, request):
        return fees.with_last_posted(super().get_queryset(request))

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "amount":
            kwargs["max_value"] = MAX_AMOUNT  # the service's bound (apps.core.money), said at once
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return list(ADD_FIELDS)
        return [*ADD_FIELDS, "enabled", "last_posted", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        # A fee stays on the account it was added to: its periods are posted there.
        return () if obj is None else ("account", "last_posted", "created_at", "updated_at")

    @admin.display(description="owner", ordering="account__peer__reseller__name")
    def owner(self, fee):
        return fee.account.peer.reseller or "operator"

    @admin.display(description="last period posted")
    def last_posted(self, fee):
        # The annotation of get_queryset: no query per row.
        return fees.day_of_reference(getattr(fee, "last_posted_reference", None))

    def create_via_service(self, request, form):
        values = form_values(form, exclude=("account",))
        return fees.add_fee(form.cleaned_data["account"], actor=self.scope(request), **values)

    def update_via_service(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            fees.change_fee(obj, actor=self.scope(request), changes=changes)
