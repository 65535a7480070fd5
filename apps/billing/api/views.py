"""Accounts and their ledger, read only: money moves through apps.billing.services."""

from apps.billing.api import filters, serializers
from apps.billing.models import Account, LedgerEntry
from apps.core.api import ScopedReadOnlyViewSet


class AccountViewSet(ScopedReadOnlyViewSet):
    """The one account of each peer, with its balance (the cached sum of its ledger)."""

    queryset = Account.objects.all()
    serializer_class = serializers.AccountSerializer
    filterset_class = filters.AccountFilter
    ordering_fields = ("balance", "created_at")


class LedgerEntryViewSet(ScopedReadOnlyViewSet):
    """Immutable movements of money: payments, call charges, refunds, fees, adjustments."""

    queryset = LedgerEntry.objects.all()
    serializer_class = serializers.LedgerEntrySerializer
    filterset_class = filters.LedgerEntryFilter
    ordering_fields = ("created_at", "amount")
