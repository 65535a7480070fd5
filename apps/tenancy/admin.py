"""Resellers, their staff logins and API keys in the admin."""

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from apps.billing.models import Account
from apps.billing.services.ledger import open_reseller_account
from apps.billing.spending import reseller_spent
from apps.core.admin import (
    ADD,
    CHANGE,
    READ_ONLY,
    VIEW,
    ConfirmForm,
    ObjectTool,
    ScopedInline,
    ScopedModelAdmin,
    ScopedModelForm,
    form_changes,
)
from apps.peers.models import Peer
from apps.rates.models import RateTable
from apps.tenancy import services
from apps.tenancy.models import ApiKey, Membership, Reseller


class LoginForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)
    email = forms.EmailField(required=False)


class ResellerAccountForm(forms.Form):
    rate_table = forms.ModelChoiceField(
        queryset=None,
        help_text="The operator's prices for this reseller: its customers' calls cost it these.",
    )
    mode = forms.ChoiceField(choices=Account.Mode.choices, initial=Account.Mode.POSTPAID)
    credit_limit = forms.DecimalField(
        max_digits=20, decimal_places=6, initial=0, help_text="Postpaid: how far below zero it may go."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rate_table"].queryset = RateTable.objects.filter(
            reseller__isnull=True, purpose=RateTable.Purpose.SELL
        )


def open_account(admin_, request, reseller, data):
    account = open_reseller_account(
        reseller,
        actor=admin_.scope(request),
        rate_table_id=data["rate_table"].pk,
        mode=data["mode"],
        credit_limit=data["credit_limit"],
    )
    return (
        f"{reseller} now has an account with us ({account.get_mode_display().lower()}): its customers' "
        f"calls are charged to it at {data['rate_table']}, and its money bounds what they may spend."
    )


def add_staff(admin_, request, reseller, data):
    services.add_reseller_staff(reseller, actor=admin_.scope(request), **data)
    return f"{data['username']} can now sign in to the admin for {reseller}."


class StaffInline(ScopedInline):
    model = Membership
    fk_name = "reseller"
    verbose_name = "staff login"
    verbose_name_plural = "staff logins"
    fields = ("login", "email", "last_login")
    readonly_fields = fields
    operator_can = READ_ONLY
    reseller_can = READ_ONLY
    can_delete = False

    def get_queryset(self, request):
        # Memberships are reached through their (already scoped) reseller only.
        return Membership.objects.select_related("user")

    @admin.display(description="login")
    def login(self, membership):
        return membership.user.get_username()

    @admin.display(description="email")
    def email(self, membership):
        return membership.user.email

    @admin.display(description="last login")
    def last_login(self, membership):
        return membership.user.last_login or "never"


@admin.register(Reseller)
class ResellerAdmin(ScopedModelAdmin):
    operator_can = frozenset({VIEW, ADD, CHANGE})
    reseller_can = READ_ONLY
    # The plan the operator routes the reseller's customers by is not the reseller's to see.
    operator_only_fields = ("routing_plan",)
    list_display = ("name", "company", "currency", "email", "routing_plan", "is_active", "created_at")
    list_select_related = ("routing_plan",)
    list_filter = ("is_active", "currency")
    search_fields = ("name", "company", "email")
    inlines = (StaffInline,)
    object_tools = (
        ObjectTool(
            "staff",
            "Add staff login",
            LoginForm,
            add_staff,
            permission=VIEW,
            help="The new login sees and manages only this reseller's customers.",
        ),
        ObjectTool(
            "account",
            "Open its account with us",
            ResellerAccountForm,
            open_account,
            show=lambda reseller: not Account.objects.filter(reseller=reseller).exists(),
            help="Two-level money: the reseller pays us for its customers' calls at these prices; "
            "its balance and credit bound what they may spend together.",
        ),
    )

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "company", "currency", "email", "routing_plan"]
        return [
            "name",
            "company",
            "currency",
            "email",
            "routing_plan",
            "is_active",
            ("daily_spend_limit", "spent_today"),
            ("monthly_spend_limit", "spent_this_month"),
            "account_with_us",
            "created_at",
        ]

    def get_readonly_fields(self, request, obj=None):
        # The operator sets a reseller's spend limits; its staff see them (read-only page).
        return ("created_at", "spent_today", "spent_this_month", "account_with_us")

    @admin.display(description="account with us")
    def account_with_us(self, reseller):
        account = Account.objects.filter(reseller=reseller).select_related("reseller__rate_table").first()
        if account is None:
            return "none: its customers' calls are not charged to it, and only its spend limits bound them"
        credit = f", credit {account.credit_limit}" if account.mode == Account.Mode.POSTPAID else ""
        return (
            f"{account.get_mode_display()}: balance {account.balance} {account.currency}{credit}, "
            f"at the prices of {reseller.rate_table}"
        )

    @admin.display(description="spent today (all its customers)")
    def spent_today(self, reseller):
        return reseller_spent(reseller.pk).today

    @admin.display(description="spent this month (all its customers)")
    def spent_this_month(self, reseller):
        return reseller_spent(reseller.pk).this_month

    def _tool_applies(self, request, tool, obj):
        if tool.name != "staff":
            return super()._tool_applies(request, tool, obj)
        # Staff add colleagues to their own reseller, the one they can see.
        scope = self.scope(request)
        return scope.is_operator or (scope.is_reseller and scope.reseller_id == obj.pk)

    def update_via_service(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            services.update_reseller(obj, actor=self.scope(request), changes=changes)

    def create_via_service(self, request, form):
        data = form.cleaned_data
        return services.create_reseller(
            actor=self.scope(request),
            name=data["name"],
            currency=data["currency"],
            company=data["company"],
            email=data["email"],
            **({"routing_plan_id": data["routing_plan"].pk} if data.get("routing_plan") else {}),
        )


class ApiKeyForm(ScopedModelForm):
    class Meta:
        model = ApiKey
        fields = ("name", "scope", "access", "reseller", "peer")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Left out (scripts that post the form as it was before access levels), a key reads
        # and writes, as every key did.
        self.fields["access"].required = False

    def clean_access(self):
        return self.cleaned_data.get("access") or ApiKey.Access.READ_WRITE

    def clean(self):
        data = super().clean()
        # A reseller's own key names the reseller; staff do not pick it, it is theirs.
        if self.scope.is_reseller and data.get("scope") == ApiKey.Scope.RESELLER:
            self.instance.reseller_id = self.scope.reseller_id
        return data


def revoke(admin_, request, key, data):
    services.revoke_api_key(key, actor=admin_.scope(request))
    return f"{key} is revoked; requests with it are refused from now on."


@admin.register(ApiKey)
class ApiKeyAdmin(ScopedModelAdmin):
    operator_can = frozenset({VIEW, ADD, "revoke"})
    reseller_can = frozenset({VIEW, ADD, "revoke"})
    operator_only_fields = ("reseller",)
    add_form = ApiKeyForm
    list_display = (
        "name",
        "lookup",
        "scope",
        "access",
        "reseller",
        "peer",
        "status",
        "created_by",
        "last_used_at",
    )
    list_filter = ("scope", "access", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("reseller", "peer", "created_by")
    search_fields = ("name", "=lookup")
    choice_filters = {"peer": lambda peers: peers.customers()}
    actions = ("revoke_selected",)
    object_tools = (
        ObjectTool(
            "revoke",
            "Revoke",
            ConfirmForm,
            revoke,
            permission="revoke",
            show=lambda key: key.revoked_at is None,
            help="Requests with this key are refused at once and for good.",
        ),
    )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "scope", "access", "reseller", "peer"]
        return [
            "name",
            "lookup",
            "scope",
            "access",
            "reseller",
            "peer",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "scope" and not self.scope(request).is_operator:
            kwargs["choices"] = [c for c in ApiKey.Scope.choices if c[0] != ApiKey.Scope.OPERATOR]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def has_revoke_permission(self, request):
        return self.allows(request, "revoke")

    @admin.display(description="status", ordering="revoked_at")
    def status(self, key):
        if key.revoked_at:
            return format_html('<span style="color:#ba2121">revoked {}</span>', key.revoked_at.date())
        return "usable"

    def create_via_service(self, request, form):
        key = form.instance
        reseller = Reseller.objects.get(pk=key.reseller_id) if key.reseller_id else None
        peer = Peer.objects.get(pk=key.peer_id) if key.peer_id else None
        key, token = services.create_api_key(
            actor=self.scope(request),
            name=key.name,
            scope=key.scope,
            access=key.access,
            reseller=reseller,
            peer=peer,
        )
        # The token is stored only as a digest: this message is the one time it is shown.
        self.message_user(
            request,
            format_html("Copy the key now, it is not shown again: <code>{}</code>", token),
            messages.WARNING,
        )
        return key

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        actor = self.scope(request)
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            services.revoke_api_key(key, actor=actor)
        self.message_user(request, f"{len(keys)} key(s) revoked.", messages.SUCCESS)
