"""Accounts and their ledger in the admin: balances are read, money moves only through services."""

from django.contrib import admin, messages
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html

from apps.billing import services
from apps.billing.forms import AdjustmentForm, PaymentForm
from apps.billing.models import Account, LedgerEntry
from apps.core.admin import (
    CHANGE,
    VIEW,
    ObjectTool,
    ReadOnlyModelAdmin,
    ScopedModelAdmin,
    ScopedRelatedFilter,
    form_changes,
)

RECENT_ENTRIES = 10


def add_payment(admin_, request, account, data):
    entry, created = services.post_payment(
        account,
        actor=admin_.scope(request),
        amount=data["amount"],
        reference=data["reference"],
        description=data["description"],
    )
    return _posted(admin_, request, account, entry, created, "Payment")


def adjust_balance(admin_, request, account, data):
    entry, created = services.post_adjustment(
        account,
        actor=admin_.scope(request),
        amount=data["amount"],
        reason=data["reason"],
        reference=data["reference"],
    )
    return _posted(admin_, request, account, entry, created, "Adjustment")


def _posted(admin_, request, account, entry, created, what):
    account.refresh_from_db(fields=["balance"])
    if not created:
        admin_.message_user(
            request,
            f"Reference {entry.reference!r} was already posted on {entry.created_at:%Y-%m-%d %H:%M}; "
            f"nothing was posted again and the balance is still {account.balance} {account.currency}.",
            messages.WARNING,
        )
        return None
    return f"{what} of {entry.amount} {account.currency} posted; the balance is now {account.balance}."


@admin.register(Account)
class AccountAdmin(ScopedModelAdmin):
    # Accounts are opened with their peer (create_peer) and never deleted.
    operator_can = frozenset({VIEW, CHANGE})
    reseller_can = frozenset({VIEW, CHANGE})
    operator_only_fields = ("owner", "peer__reseller")
    list_display = (
        "peer",
        "owner",
        "mode",
        "balance",
        "available",
        "credit_limit",
        "currency",
        "low_balance_threshold",
        "money_links",
    )
    list_select_related = ("peer", "peer__reseller")
    list_filter = ("mode", "currency", ("peer__reseller", ScopedRelatedFilter))
    search_fields = ("peer__name", "peer__company")
    fields = (
        "peer",
        "currency",
        "mode",
        "credit_limit",
        "low_balance_threshold",
        "balance",
        "available",
        "recent_entries",
    )
    readonly_fields = ("peer", "currency", "balance", "available", "recent_entries")
    object_tools = (
        ObjectTool(
            "payment",
            "Add payment",
            PaymentForm,
            add_payment,
            help="Credits the account with a payment received.",
        ),
        ObjectTool(
            "adjust",
            "Adjust balance",
            AdjustmentForm,
            adjust_balance,
            help="Corrects the balance with a ledger entry; the reason is kept.",
        ),
    )

    @admin.display(description="owner", ordering="peer__reseller__name")
    def owner(self, account):
        return account.peer.reseller or "operator"

    @admin.display(description="available")
    def available(self, account):
        # Balance plus credit for postpaid; live-call reservations are not subtracted yet.
        return account.spendable

    @admin.display(description="")
    def money_links(self, account):
        payment = reverse(self._url_name("tool"), args=[account.pk, "payment"])
        adjust = reverse(self._url_name("tool"), args=[account.pk, "adjust"])
        return format_html('<a href="{}">Add payment</a> · <a href="{}">Adjust</a>', payment, adjust)

    @admin.display(description="recent ledger entries")
    def recent_entries(self, account):
        entries = account.entries.all()[:RECENT_ENTRIES]
        ledger_url = reverse("admin:billing_ledgerentry_changelist") + f"?account__id__exact={account.pk}"
        return render_to_string(
            "admin/billing/account/recent_entries.html", {"entries": entries, "ledger_url": ledger_url}
        )

    def update_via_service(self, request, obj, form):
        changes = form_changes(form)
        if changes:
            services.update_account(obj, actor=self.scope(request), changes=changes)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyModelAdmin):
    """The ledger is the truth: entries are corrected by posting new ones, never edited."""

    operator_only_fields = ("account__peer__reseller",)
    list_display = (
        "occurred_at",
        "account",
        "kind",
        "amount",
        "reference",
        "description",
        "actor_label",
        "cdr_id",
    )
    list_select_related = ("account__peer",)
    list_filter = ("kind", ("account__peer__reseller", ScopedRelatedFilter))
    search_fields = ("=reference", "account__peer__name", "description")
    # Statements follow when things happened (a call's end), not when they were written.
    date_hierarchy = "occurred_at"
    fields = (
        "account",
        "kind",
        "amount",
        "reference",
        "cdr",
        "description",
        "actor_label",
        "occurred_at",
        "created_at",
    )
