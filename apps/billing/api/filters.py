from apps.billing.models import Account, LedgerEntry
from apps.cdr.models import Cdr
from apps.core.api import FilterSet, IdFilter, MomentFilter, visible
from apps.peers.models import Peer


class AccountFilter(FilterSet):
    peer = IdFilter(queryset=visible(Peer))

    class Meta:
        model = Account
        fields = ["peer", "currency", "mode"]


class LedgerEntryFilter(FilterSet):
    account = IdFilter(queryset=visible(Account))
    cdr = IdFilter(queryset=visible(Cdr), label="The call an entry charges or adjusts")
    created_after = MomentFilter(field_name="created_at", lookup_expr="gte", label="Created at or after")
    created_before = MomentFilter(field_name="created_at", lookup_expr="lt", label="Created before")

    occurred_after = MomentFilter(
        field_name="occurred_at", lookup_expr="gte", label="Occurred at or after (a call's end, a payment)"
    )
    occurred_before = MomentFilter(field_name="occurred_at", lookup_expr="lt", label="Occurred before")

    class Meta:
        model = LedgerEntry
        fields = [
            "account",
            "kind",
            "reference",
            "cdr",
            "created_after",
            "created_before",
            "occurred_after",
            "occurred_before",
        ]
