from django.db.models import Q

from apps.core.querysets import ScopedQuerySet


class PeerQuerySet(ScopedQuerySet):
    reseller_lookup = "reseller"
    customer_lookup = "pk"

    def customers(self):
        return self.filter(role__in=("customer", "user"))

    def suppliers(self):
        return self.filter(role__in=("supplier", "user"))

    def active(self):
        """Peers that may send or receive calls now."""
        return self.filter(enabled=True, suspended_at__isnull=True)

    def for_node(self, node):
        return self.filter(nodes=node)


class PeerChildQuerySet(ScopedQuerySet):
    """Endpoints, SIP accounts, gateways and rewrite rules: visible with their peer."""

    reseller_lookup = "peer__reseller"
    customer_lookup = "peer"

    def enabled(self):
        return self.filter(enabled=True, peer__enabled=True, peer__suspended_at__isnull=True)


class BlocklistQuerySet(ScopedQuerySet):
    reseller_lookup = "reseller"
    customer_lookup = "peers"

    def applying_to(self, peer):
        return self.filter(Q(peers=peer) | Q(applies_to_all=True)).distinct()


class BlocklistEntryQuerySet(ScopedQuerySet):
    reseller_lookup = "blocklist__reseller"
    customer_lookup = "blocklist__peers"
