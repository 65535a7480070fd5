"""Peers and what hangs off them: endpoints, SIP accounts, gateways, rewrite rules.

Blocklists have their own module, admin_blocklists, imported here to register them.
"""

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from apps.billing.models import Account
from apps.core.admin import (
    ADD,
    CHANGE,
    EVERYTHING,
    NOTHING,
    VIEW,
    ConfirmForm,
    ObjectTool,
    ScopedInline,
    ScopedModelAdmin,
    ScopedModelForm,
    ScopedRelatedFilter,
    form_changes,
    form_values,
)
from apps.core.errors import DomainError
from apps.core.money import MAX_CREDIT_LIMIT
from apps.peers import (
    admin_blocklists,  # noqa: F401  (registers the blocklist pages)
    services,
)
from apps.peers.interconnection import interconnection
from apps.peers.models import Endpoint, Gateway, Peer, Registration, RewriteRule, SipAccount
from apps.tenancy import services as tenancy_services
from apps.tenancy.admin import LoginForm

STATUS_COLOURS = {"active": "#447e36", "suspended": "#b36b00", "disabled": "#ba2121"}


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=200, help_text="Recorded in the audit trail.")


class SipPasswordForm(forms.Form):
    password = forms.CharField(
        widget=forms.PasswordInput, strip=False, help_text="At least 10 characters, letters and digits."
    )


class TimeZoneFormMixin:
    """A peer's time zone may be left empty: it keeps the zone it has (a new one: TIME_ZONE)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "time_zone" in self.fields:
            self.fields["time_zone"].required = False

    def clean_time_zone(self):
        return self.cleaned_data.get("time_zone") or self.instance.time_zone


class PeerAddForm(TimeZoneFormMixin, ScopedModelForm):
    """A peer and the options of the account opened with it."""

    currency = forms.CharField(
        max_length=3, required=False, help_text="Empty: the price list's currency, else the owner's."
    )
    account_mode = forms.ChoiceField(choices=Account.Mode.choices, initial=Account.Mode.PREPAID)
    credit_limit = forms.DecimalField(
        max_digits=20,
        decimal_places=6,
        min_value=0,
        max_value=MAX_CREDIT_LIMIT,
        initial=0,
        help_text="Postpaid accounts only.",
    )


class PeerForm(TimeZoneFormMixin, ScopedModelForm):
    """A peer's change form: its blocklists are chosen among those set_peer_blocklists takes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        lists = self.fields.get("blocklists")
        if lists is None or self.instance._state.adding:
            return
        owner = self.instance.reseller_id
        lists.queryset = lists.queryset.filter(Q(reseller=owner) | Q(reseller__isnull=True))
        if not self.scope.is_operator:
            # The operator's lists on this peer are not the staff's to see or take off
            # (set_peer_blocklists keeps them): the form neither shows nor posts them.
            shown = self.initial.get("blocklists", ())
            self.initial["blocklists"] = [blocklist for blocklist in shown if blocklist.reseller_id == owner]


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("suspended", "Suspended"), ("disabled", "Disabled")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.active()
        if self.value() == "suspended":
            return queryset.filter(enabled=True, suspended_at__isnull=False)
        if self.value() == "disabled":
            return queryset.filter(enabled=False)
        return queryset


def status_badge(peer: Peer):
    return format_html('<b style="color:{}">{}</b>', STATUS_COLOURS[peer.status], peer.status)


# --- inlines on the peer page ---------------------------------------------------------------


# The service that creates each kind of row hanging off a peer.
ADD_SERVICES = {
    Endpoint: "add_endpoint",
    SipAccount: "add_sip_account",
    Gateway: "add_gateway",
    RewriteRule: "add_rewrite_rule",
    Registration: "add_registration",
}


def add_child(actor, peer, form):
    """Create the row of a valid form through its model's add_* service."""
    values = form_values(form, exclude=("peer",))
    if "password" in form.cleaned_data:
        values["password"] = form.cleaned_data["password"]  # a form-only field the service hashes
    return getattr(services, ADD_SERVICES[form._meta.model])(peer, actor=actor, **values)


class ChildInline(ScopedInline):
    """Rows of one peer, written by add_*/update_child/remove_child."""

    reseller_can = EVERYTHING

    def create(self, request, parent, form):
        return add_child(self.scope(request), parent, form)

    def update(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            services.update_child(obj, actor=self.scope(request), changes=changes)

    def remove(self, request, obj):
        services.remove_child(obj, actor=self.scope(request))


class EndpointInline(ChildInline):
    model = Endpoint
    fields = ("ip", "mask", "port", "transport", "enabled", "description")


class SipAccountInlineForm(ScopedModelForm):
    password = forms.CharField(
        widget=forms.PasswordInput,
        strip=False,
        required=False,
        help_text="Required for a new account; leave empty to keep the current one.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            # The digests are made of username and domain: they change only with a password.
            for name in ("username", "domain"):
                if name in self.fields:
                    self.fields[name].disabled = True

    def clean(self):
        data = super().clean()
        if self.instance._state.adding and not data.get("password"):
            self.add_error("password", "Set a password for the new SIP account.")
        return data


class SipAccountInline(ChildInline):
    model = SipAccount
    form = SipAccountInlineForm
    fields = ("username", "domain", "password", "enabled")
    verbose_name = "SIP account"

    def update(self, request, obj, form):
        super().update(request, obj, form)
        if form.cleaned_data.get("password"):
            services.set_sip_password(obj, actor=self.scope(request), password=form.cleaned_data["password"])


class GatewayInline(ChildInline):
    model = Gateway
    reseller_can = NOTHING  # gateways belong to suppliers, and suppliers to the operator
    fields = (
        "name",
        "host",
        "port",
        "transport",
        "prefix",
        "strip_digits",
        "priority",
        "weight",
        "probing",
        "enabled",
    )


class RewriteRuleInline(ChildInline):
    model = RewriteRule
    fields = ("direction", "field", "pattern", "replacement", "position", "enabled")


# --- peers ------------------------------------------------------------------------------------


def suspend(admin_, request, peer, data):
    services.suspend_peer(peer, actor=admin_.scope(request), reason=data["reason"])
    return f"{peer} is suspended: new calls from and to it are refused."


def resume(admin_, request, peer, data):
    services.resume_peer(peer, actor=admin_.scope(request))
    return f"{peer} is active again."


def add_portal_login(admin_, request, peer, data):
    tenancy_services.add_customer_login(peer, actor=admin_.scope(request), **data)
    return f"{data['username']} can now sign in to the portal as {peer}."


@admin.register(Peer)
class PeerAdmin(ScopedModelAdmin):
    # Peers are disabled, never deleted: their CDRs and ledger rows keep pointing at them.
    operator_can = frozenset({VIEW, ADD, CHANGE})
    reseller_can = frozenset({VIEW, ADD, CHANGE})
    owner_field = "reseller"
    # Routing is the operator's: reseller staff neither see nor set a customer's routing
    # plan or how far below its price a call may be routed (update_peer refuses them too).
    operator_only_fields = ("reseller", "nodes", "buy_rate_table", "routing_plan", "profit_control")
    form = PeerForm
    add_form = PeerAddForm
    list_display = (
        "name",
        "role",
        "status",
        "reseller",
        "sell_rate_table",
        "buy_rate_table",
        "balance",
        "max_calls",
        "max_cps",
    )
    list_select_related = ("reseller", "account", "sell_rate_table", "buy_rate_table")
    list_filter = (
        "role",
        StatusFilter,
        ("reseller", ScopedRelatedFilter),
        ("sell_rate_table", ScopedRelatedFilter),
        ("routing_plan", ScopedRelatedFilter),
        "record_calls",
    )
    search_fields = ("name", "company", "tech_prefix", "=endpoints__ip", "sip_accounts__username")
    filter_horizontal = ("nodes", "blocklists")
    choice_filters = {
        "sell_rate_table": lambda tables: tables.sell(),
        "buy_rate_table": lambda tables: tables.buy(),
    }
    actions = ("suspend_selected", "resume_selected")
    object_tools = (
        ObjectTool(
            "suspend",
            "Suspend",
            ReasonForm,
            suspend,
            show=lambda peer: not peer.is_suspended,
            help="New calls from and to this peer are refused on every node; live calls go on.",
        ),
        ObjectTool("resume", "Resume", ConfirmForm, resume, show=lambda peer: peer.is_suspended),
        ObjectTool(
            "login", "Add portal login", LoginForm, add_portal_login, show=lambda peer: peer.is_customer
        ),
    )

    def base_fieldsets(self, request, obj=None):
        routing = (
            "enabled",
            ("max_calls", "max_cps"),
            "max_price",
            "tech_prefix",
            "sell_rate_table",
            "buy_rate_table",
            "routing_plan",
            "profit_control",
            ("record_calls", "recording_retention_days"),
            ("capture_calls", "codecs"),
            "time_zone",
            "nodes",
            "blocklists",
        )
        if obj is not None and not obj.is_customer:
            # How a peer's own calls are routed and recorded: suppliers send us none.
            routing = tuple(
                n
                for n in routing
                if n
                not in (
                    "routing_plan",
                    "profit_control",
                    "max_price",
                    ("record_calls", "recording_retention_days"),
                )
            )
        if obj is None:
            return [
                (None, {"fields": ("name", "company", "role", "reseller")}),
                ("Routing and limits", {"fields": routing}),
                ("Account", {"fields": ("currency", "account_mode", "credit_limit")}),
                ("Invoices", {"fields": ("billing_address", "tax_id")}),
                ("Notes", {"fields": ("notes",)}),
            ]
        return [
            (None, {"fields": ("name", "company", "role", "reseller", "status_detail", "account_link")}),
            ("Routing and limits", {"fields": routing}),
            ("Interconnection", {"fields": ("interconnection_sheet",)}),
            ("Invoices", {"fields": ("billing_address", "tax_id")}),
            ("Notes", {"fields": ("notes",)}),
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # Owner and role are fixed at creation (update_peer refuses them).
        return ("role", "reseller", "status_detail", "account_link", "interconnection_sheet")

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "role" and not self.scope(request).is_operator:
            kwargs["choices"] = [c for c in Peer.Role.choices if c[0] != Peer.Role.SUPPLIER]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if request.GET.get("app_label") == "routing" and request.GET.get("field_name") == "supplier":
            # The autocomplete of a route's supplier: routes go to the operator's suppliers only.
            queryset = queryset.suppliers().filter(reseller__isnull=True)
        return queryset, may_have_duplicates

    def get_inlines(self, request, obj):
        if obj is None:
            return (EndpointInline, SipAccountInline, GatewayInline, RewriteRuleInline)
        inlines = []
        if obj.is_customer:
            inlines += [EndpointInline, SipAccountInline]
        if obj.is_supplier:
            inlines.append(GatewayInline)
        return (*inlines, RewriteRuleInline)

    # -- columns and read-only fields --

    @admin.display(description="status", ordering="suspended_at")
    def status(self, peer):
        return status_badge(peer)

    @admin.display(description="status")
    def status_detail(self, peer):
        if peer.is_suspended:
            return format_html(
                "{} since {}: {}", status_badge(peer), peer.suspended_at, peer.suspended_reason
            )
        return status_badge(peer)

    @admin.display(description="balance", ordering="account__balance")
    def balance(self, peer):
        try:
            account = peer.account
        except Account.DoesNotExist:
            return "-"
        return f"{account.balance:.2f} {account.currency}"

    @admin.display(description="account")
    def account_link(self, peer):
        try:
            account = peer.account
        except Account.DoesNotExist:
            return "-"
        url = reverse("admin:billing_account_change", args=[account.pk])
        return format_html(
            '<a href="{}">{} {} ({})</a>', url, account.balance, account.currency, account.get_mode_display()
        )

    @admin.display(description="addresses to send calls to")
    def interconnection_sheet(self, peer):
        """What the peer's portal shows it (apps.peers.interconnection)."""
        addresses, fallback = interconnection(peer)
        if not addresses:
            return "No enabled node serves this peer: it has nowhere to send calls."
        lines = format_html_join(
            mark_safe("<br>"),
            "{}:{} {}",
            ((a.address, a.port, f"({a.node}{', ' + a.host if a.host else ''})" if a.node else "(any node)")
             for a in addresses),
        )  # fmt: skip
        if not fallback:
            return lines
        spare = ", ".join(f"{a.address}:{a.port}" for a in fallback)
        return format_html("{}<br>While these nodes are down (service-level HA): {}", lines, spare)

    # -- writes --

    def create_via_service(self, request, form):
        extra = form.cleaned_data
        actor = self.scope(request)
        peer = services.create_peer(
            actor=actor,
            currency=extra["currency"].upper() or None,
            account_mode=extra["account_mode"],
            credit_limit=extra["credit_limit"] or 0,
            nodes=list(extra.get("nodes") or ()),
            **form_values(form),
        )
        if extra.get("blocklists"):
            services.set_peer_blocklists(peer, list(extra["blocklists"]), actor=actor)
        return peer

    def update_via_service(self, request, obj, form):
        actor = self.scope(request)
        changes = form_changes(form)
        if changes:
            services.update_peer(obj, actor=actor, changes=changes)
        if "nodes" in form.changed_data:
            services.assign_peer_to_nodes(obj, list(form.cleaned_data["nodes"]), actor=actor)
        if "blocklists" in form.changed_data:
            services.set_peer_blocklists(obj, list(form.cleaned_data["blocklists"]), actor=actor)

    @admin.action(description="Suspend selected peers", permissions=["change"])
    def suspend_selected(self, request, queryset):
        form, page = self.confirm_action(
            request, queryset, ReasonForm, title="Suspend peers", action="suspend_selected"
        )
        if form is None:
            return page
        self._each(
            request,
            queryset,
            "suspended",
            lambda peer, actor: services.suspend_peer(peer, actor=actor, reason=form.cleaned_data["reason"]),
        )
        return None

    @admin.action(description="Resume selected peers", permissions=["change"])
    def resume_selected(self, request, queryset):
        self._each(request, queryset, "resumed", lambda peer, actor: services.resume_peer(peer, actor=actor))

    def _each(self, request, queryset, verb, call):
        actor, done = self.scope(request), 0
        for peer in queryset:
            try:
                call(peer, actor)
            except DomainError as exc:
                self.message_user(request, f"{peer}: {exc.message}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} peer(s) {verb}.", messages.SUCCESS)


# --- endpoints, SIP accounts, gateways and rewrite rules on their own pages -------------------


class PeerChildAdmin(ScopedModelAdmin):
    """A list across peers; the peer is chosen once, on creation."""

    reseller_can = EVERYTHING
    operator_only_fields = ("owner", "peer__reseller")
    autocomplete_fields = ("peer",)
    list_select_related = ("peer", "peer__reseller")
    choice_filters = {"peer": lambda peers: peers.customers()}

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("peer",)

    def create_via_service(self, request, form):
        return add_child(self.scope(request), form.cleaned_data["peer"], form)

    @admin.display(description="owner", ordering="peer__reseller__name")
    def owner(self, obj):
        return obj.peer.reseller or "operator"

    def update_via_service(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            services.update_child(obj, actor=self.scope(request), changes=changes)

    def delete_via_service(self, request, obj):
        services.remove_child(obj, actor=self.scope(request))


@admin.register(Endpoint)
class EndpointAdmin(PeerChildAdmin):
    list_display = ("cidr", "port", "transport", "peer", "owner", "enabled", "description")
    list_filter = ("enabled", "transport", ("peer__reseller", ScopedRelatedFilter))
    search_fields = ("ip", "peer__name", "description")
    fields = ("peer", "ip", "mask", "port", "transport", "enabled", "description")


class SipAccountAddForm(ScopedModelForm):
    password = forms.CharField(
        widget=forms.PasswordInput, strip=False, help_text="At least 10 characters, letters and digits."
    )


def set_password(admin_, request, account, data):
    services.set_sip_password(account, actor=admin_.scope(request), password=data["password"])
    return f"The password of {account} is changed; registered devices must use the new one."


@admin.register(SipAccount)
class SipAccountAdmin(PeerChildAdmin):
    add_form = SipAccountAddForm
    list_display = ("__str__", "peer", "owner", "enabled", "created_at")
    list_filter = ("enabled", ("peer__reseller", ScopedRelatedFilter))
    search_fields = ("username", "domain", "peer__name")
    object_tools = (ObjectTool("password", "Set password", SipPasswordForm, set_password),)

    def get_fields(self, request, obj=None):
        # Never the digests: ha1 is as good as the password for SIP digest authentication.
        if obj is None:
            return ["peer", "username", "domain", "password", "enabled"]
        return ["peer", "username", "domain", "enabled", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("peer", "username", "domain", "created_at", "updated_at")


@admin.register(Gateway)
class GatewayAdmin(PeerChildAdmin):
    reseller_can = NOTHING
    list_display = ("name", "peer", "uri", "priority", "weight", "probing", "enabled")
    list_filter = ("enabled", "probing", "transport")
    search_fields = ("name", "host", "peer__name")
    choice_filters = {"peer": lambda peers: peers.suppliers()}
    fields = (
        "peer",
        "name",
        "host",
        "port",
        "transport",
        "prefix",
        "strip_digits",
        "priority",
        "weight",
        "probing",
        "enabled",
    )


@admin.register(RewriteRule)
class RewriteRuleAdmin(PeerChildAdmin):
    list_display = ("peer", "direction", "field", "pattern", "replacement", "position", "enabled")
    list_filter = ("direction", "field", "enabled", ("peer__reseller", ScopedRelatedFilter))
    search_fields = ("pattern", "replacement", "peer__name")
    choice_filters = {}
    fields = ("peer", "direction", "field", "pattern", "replacement", "position", "enabled")


@admin.register(Registration)
class RegistrationAdmin(PeerChildAdmin):
    """Outbound registrations, a list across suppliers (the operator's: suppliers are)."""

    reseller_can = NOTHING
    list_display = ("aor", "peer", "registrar", "node", "expiry", "enabled")
    list_filter = ("enabled", "node")
    search_fields = ("aor", "registrar", "username", "peer__name")
    choice_filters = {"peer": lambda peers: peers.suppliers()}
    list_select_related = ("peer", "node")
    fields = ("peer", "registrar", "aor", "username", "password", "proxy", "expiry", "node", "enabled")
