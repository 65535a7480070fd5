"""One name for every customer: DNS records that list the live nodes, kept by RFC 2136 updates.

With DNS_UPDATE_SERVER set, the node holding the lease LEASE (taken and kept by the
heartbeat thread, apps.cluster.presence) writes into DNS_ZONE, on every heartbeat when the
live nodes changed and every REPUBLISH_SECONDS anyway (a zone restored from a backup):

- `DNS_NAME` A/AAAA: the SIP address of every live node (clients without SRV);
- `_sip._udp.DNS_NAME` and `_sip._tcp.DNS_NAME` SRV: priority 10, the node's DNS weight,
  its SIP port, target `<node>.DNS_NAME`;
- `<node>.DNS_NAME` A/AAAA: each live node's SIP address.

A node whose heartbeat goes stale (CLUSTER_STALE_SECONDS) leaves the records at the next
heartbeat of the publisher, and comes back the same way. Updates are signed with TSIG
(DNS_TSIG_NAME / DNS_TSIG_SECRET / DNS_TSIG_ALGORITHM) and sent over TCP to the zone's
primary server (BIND's named, Knot…: deploy/dns/README.md). Records carry DNS_TTL seconds,
so resolvers forget a dead node soon after the update.

dnspython builds and signs the updates: a well-kept library, instead of our own wire format.
"""

import ipaddress
import logging
import time
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
from django.conf import settings

from apps.cluster import leases
from apps.nodes.models import Node

logger = logging.getLogger(__name__)

LEASE = "dns-publisher"
REPUBLISH_SECONDS = 300


class DnsUpdateFailed(Exception):
    """The server refused the update or did not answer."""


@dataclass(frozen=True, order=True)
class Target:
    name: str
    address: str
    port: int
    weight: int


def enabled() -> bool:
    return bool(settings.DNS_UPDATE_SERVER)


def live_targets() -> list[Target]:
    """The live nodes (enabled, fresh heartbeat) as SRV targets, by name."""
    return [
        Target(node.name, node.sip_address, node.sip_port, node.dns_weight)
        for node in Node.objects.enabled().alive().order_by("name")
    ]


def _kind(address: str) -> str:
    return "AAAA" if ipaddress.ip_address(address).version == 6 else "A"


def update_for(targets: list[Target], every_node: list[str]) -> dns.update.UpdateMessage:
    """The RFC 2136 update that makes the records list `targets`; `every_node` are the names
    of all nodes, whose own records are removed when they are not among the targets."""
    zone = dns.name.from_text(settings.DNS_ZONE)
    name = dns.name.from_text(settings.DNS_NAME)
    keyring = None
    if settings.DNS_TSIG_NAME:
        keyring = dns.tsigkeyring.from_text({settings.DNS_TSIG_NAME: settings.DNS_TSIG_SECRET})
    update = dns.update.UpdateMessage(
        zone,
        keyring=keyring,
        keyname=settings.DNS_TSIG_NAME or None,
        keyalgorithm=settings.DNS_TSIG_ALGORITHM,
    )
    ttl = settings.DNS_TTL
    for kind in ("A", "AAAA"):
        update.delete(name, kind)
    for service in ("_sip._udp", "_sip._tcp"):
        update.delete(dns.name.from_text(service, origin=name), "SRV")
    for node in every_node:
        update.delete(dns.name.from_text(node, origin=name))
    for target in targets:
        host = dns.name.from_text(target.name, origin=name)
        update.add(name, ttl, _kind(target.address), target.address)
        update.add(host, ttl, _kind(target.address), target.address)
        for service in ("_sip._udp", "_sip._tcp"):
            srv = f"10 {target.weight} {target.port} {host.to_text()}"
            update.add(dns.name.from_text(service, origin=name), ttl, "SRV", srv)
    return update


def publish(targets: list[Target] | None = None) -> list[Target]:
    """Send the update for `targets` (default: the live nodes now); what was published."""
    targets = live_targets() if targets is None else targets
    update = update_for(targets, list(Node.objects.values_list("name", flat=True)))
    try:
        answer = dns.query.tcp(
            update,
            settings.DNS_UPDATE_SERVER,
            port=settings.DNS_UPDATE_PORT,
            timeout=settings.DNS_UPDATE_TIMEOUT,
        )
    except (OSError, dns.exception.DNSException) as error:
        raise DnsUpdateFailed(f"DNS update to {settings.DNS_UPDATE_SERVER}: {error}") from error
    if answer.rcode() != dns.rcode.NOERROR:
        raise DnsUpdateFailed(
            f"DNS update to {settings.DNS_UPDATE_SERVER} refused: {dns.rcode.to_text(answer.rcode())}"
        )
    logger.info("DNS %s now lists %s", settings.DNS_NAME, ", ".join(t.name for t in targets) or "no node")
    return targets


class Publisher:
    """What the heartbeat thread of the lease holder calls after every beat."""

    def __init__(self) -> None:
        self.published: list[Target] | None = None
        self.at = 0.0
        self.lease_made = False

    def after_beat(self, held: list[str]) -> None:
        if enabled() and not self.lease_made:
            leases.ensure(LEASE)  # free: the next heartbeat of some node takes it
            self.lease_made = True
        if not enabled() or LEASE not in held:
            self.published = None  # another node publishes: start afresh if it comes back here
            return
        targets = live_targets()
        if targets == self.published and time.monotonic() - self.at < REPUBLISH_SECONDS:
            return
        try:
            self.published = publish(targets)
            self.at = time.monotonic()
        except DnsUpdateFailed:
            logger.exception("DNS records not updated; trying again at the next heartbeat")
