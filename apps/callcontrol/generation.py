"""The counter that tells call control's snapshot (apps.callcontrol.snapshot) it is out of date.

A committed transaction that announced a change to something the snapshot holds
(apps.core.changes) bumps one counter row, once, after commit; each process compares the
counter with the one its snapshot was built at, at most every CHECK_SECONDS, and rebuilds
when it moved. After commit, so a process never rebuilds from data it cannot see yet and
a rolled-back change costs nothing; once per transaction, so a bulk load is one rebuild.
"""

from collections.abc import Sequence

from django.db.models import F

from apps.core.changes import Change
from apps.core.db import retry_on_conflict
from apps.routing.models import RoutingGeneration

# What snapshot.build() reads. Not here: live calls, prepaid suppliers' money and quality
# statistics, which the snapshot re-reads on their own short clocks (a bump per call or per
# statistics run would rebuild it all the time), and prices (apps.rates.lookup follows each
# table's live version itself).
SNAPSHOT_KINDS = frozenset(
    {
        "nodes.Node",
        "nodes.ClusterSettings",
        "tenancy.Reseller",
        "peers.Peer",
        "peers.Endpoint",
        "peers.SipAccount",
        "peers.Gateway",
        "peers.RewriteRule",
        "peers.Blocklist",
        "peers.BlocklistEntry",
        "rates.RateTable",
        "billing.Account",
        "bundles.Bundle",
        "bundles.Subscription",
        "routing.RoutingPlan",
        "routing.RoutingRule",
        "routing.Route",
        "dids.Did",
        "dids.DidTarget",
        "media.Announcement",
        "media.AnnouncementRule",
        "capture.CaptureSettings",
        # Fraud control (docs/FRAUD.md): in-force alerts exclude routes, refuse numbers and
        # ban addresses; repeated-number controllers say which customers' calls are counted.
        "fraud.Alert",
        "fraud.Controller",
    }
)


@retry_on_conflict
def bump_generation() -> None:
    """Move the counter on; creates its row on a fresh database."""
    if not RoutingGeneration.objects.filter(pk=RoutingGeneration.SINGLETON_ID).update(value=F("value") + 1):
        RoutingGeneration.objects.get_or_create(pk=RoutingGeneration.SINGLETON_ID, defaults={"value": 1})


def current_generation() -> int:
    """The counter's value (0 before the first bump)."""
    value = RoutingGeneration.objects.filter(pk=RoutingGeneration.SINGLETON_ID).values_list(
        "value", flat=True
    )
    return next(iter(value), 0)


# Changes of these fields alone leave the snapshot as it was: a controller round that sees
# an alert's subject again only moves its `last_seen_at` (a rebuild every round otherwise).
UNREAD_FIELDS = {"fraud.Alert": frozenset({"last_seen_at"})}


def changes_committed(changes: Sequence[Change]) -> None:
    """After-commit consumer of apps.core.changes: one bump if the snapshot holds any of it."""
    if any(change.kind in SNAPSHOT_KINDS and not _unread(change) for change in changes):
        bump_generation()


def _unread(change: Change) -> bool:
    unread = UNREAD_FIELDS.get(change.kind)
    return unread is not None and bool(change.fields) and change.fields <= unread
