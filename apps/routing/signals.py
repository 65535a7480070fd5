"""Tell call control's in-memory snapshot that what it holds has changed.

Every committed change to a model the decision reads bumps one counter row; each process
compares the counter with the one its snapshot was built at (apps.callcontrol.snapshot) at
most once a second. One bump per transaction, after commit, so a rolled-back change or a
bulk load costs nothing, and a process never rebuilds from data that is not yet visible.
"""

from django.db import connection, transaction
from django.db.models import F
from django.db.models.signals import m2m_changed, post_delete, post_save

from apps.core.db import retry_on_conflict
from apps.routing.models import RoutingGeneration

WATCHED = (
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
    "routing.RoutingPlan",
    "routing.RoutingRule",
    "routing.Route",
)


@retry_on_conflict
def bump_generation() -> None:
    """Move the counter on; creates its row on a fresh database."""
    if not RoutingGeneration.objects.filter(pk=RoutingGeneration.SINGLETON_ID).update(value=F("value") + 1):
        RoutingGeneration.objects.get_or_create(pk=RoutingGeneration.SINGLETON_ID, defaults={"value": 1})


def current_generation() -> int:
    value = RoutingGeneration.objects.filter(pk=RoutingGeneration.SINGLETON_ID).values_list(
        "value", flat=True
    )
    return next(iter(value), 0)


def _changed(sender, **kwargs) -> None:
    if kwargs.get("raw"):
        return  # loaddata: the load itself ends with a bump by whoever ran it
    if connection.in_atomic_block:
        pending = connection.run_on_commit
        if any(callback is bump_generation for _sids, callback, _robust in pending):
            return
    transaction.on_commit(bump_generation)


def _connect() -> None:
    from django.apps import apps

    for label in WATCHED:
        model = apps.get_model(label)
        post_save.connect(_changed, sender=model, dispatch_uid=f"routing-gen-save-{label}")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"routing-gen-delete-{label}")
    for through in (
        apps.get_model("peers.Peer").nodes.through,
        apps.get_model("peers.Peer").blocklists.through,
    ):
        m2m_changed.connect(_changed, sender=through, dispatch_uid=f"routing-gen-m2m-{through._meta.label}")


_connect()
