"""DNS load balancing: the cluster's name lists the live nodes, through RFC 2136 updates to a
real DNS server (Debian's bind9 `named`, started here on a loopback port with a zone that
takes updates signed with a TSIG key)."""

import base64
import os
import secrets
import shutil
import signal
import subprocess
import time
from datetime import timedelta

import dns.message
import dns.query
import dns.rdatatype
import pytest
from django.utils import timezone

from apps.cluster import dns as cluster_dns
from apps.cluster import leases
from apps.cluster.models import Lease
from apps.nodes.models import Node
from tests.factories import NodeFactory
from tests.ports import free_port

pytestmark = pytest.mark.django_db

NAMED = shutil.which("named") or ("/usr/sbin/named" if os.path.exists("/usr/sbin/named") else None)
ZONE = "cluster.test"
NAME = f"sip.{ZONE}"
KEY = "smartswitch-update"


@pytest.fixture
def server(tmp_path, settings):
    """named on 127.0.0.1:<port>, master of ZONE, updates allowed with the TSIG key."""
    if NAMED is None:
        pytest.skip("no named: install Debian's bind9")
    port = free_port()
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    (tmp_path / "zone").write_text(
        f"$TTL 60\n@ IN SOA ns.{ZONE}. admin.{ZONE}. 1 60 60 600 60\n@ IN NS ns.{ZONE}.\nns IN A 127.0.0.1\n"
    )
    (tmp_path / "named.conf").write_text(
        f"""
key "{KEY}" {{ algorithm hmac-sha256; secret "{secret}"; }};
options {{
    directory "{tmp_path}";
    pid-file "{tmp_path}/named.pid";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
}};
controls {{ }};
zone "{ZONE}" {{ type primary; file "{tmp_path}/zone"; update-policy {{ grant {KEY} zonesub any; }}; }};
"""
    )
    process = subprocess.Popen(  # noqa: S603 - Debian's named, our config
        [NAMED, "-g", "-c", str(tmp_path / "named.conf"), "-n", "1"],
        stdout=(tmp_path / "named.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    settings.DNS_UPDATE_SERVER = "127.0.0.1"
    settings.DNS_UPDATE_PORT = port
    settings.DNS_ZONE, settings.DNS_NAME = ZONE, NAME
    settings.DNS_TSIG_NAME, settings.DNS_TSIG_SECRET = KEY, secret
    settings.DNS_TTL = 30
    deadline = time.monotonic() + 20
    while not answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail((tmp_path / "named.log").read_text()[-3000:])
        time.sleep(0.1)
    yield port
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)


def answers(port: int) -> bool:
    try:
        lookup(port, ZONE, "SOA")
    except (OSError, dns.exception.DNSException):
        return False
    return True


def lookup(port: int, name: str, kind: str) -> list[str]:
    query = dns.message.make_query(name, kind)
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=1)
    return sorted(
        item.to_text()
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.from_text(kind)
        for item in rrset
    )


@pytest.fixture
def nodes():
    made = [
        NodeFactory(name="node1", sip_address="192.0.2.1"),
        NodeFactory(name="node2", sip_address="192.0.2.2", dns_weight=20),
        NodeFactory(name="node3", sip_address="192.0.2.3", sip_port=5080),
    ]
    Node.objects.update(last_heartbeat=timezone.now())
    return made


def test_the_name_lists_the_live_nodes_with_their_weights_and_drops_a_stale_one(server, nodes, settings):
    cluster_dns.publish()

    assert lookup(server, NAME, "A") == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert lookup(server, f"_sip._udp.{NAME}", "SRV") == [
        f"10 10 5060 node1.{NAME}.",
        f"10 10 5080 node3.{NAME}.",
        f"10 20 5060 node2.{NAME}.",
    ]
    assert lookup(server, f"node3.{NAME}", "A") == ["192.0.2.3"]

    Node.objects.filter(name="node3").update(
        last_heartbeat=timezone.now() - timedelta(seconds=settings.CLUSTER_STALE_SECONDS + 1)
    )
    cluster_dns.publish()

    assert lookup(server, NAME, "A") == ["192.0.2.1", "192.0.2.2"]
    assert lookup(server, f"_sip._tcp.{NAME}", "SRV") == [
        f"10 10 5060 node1.{NAME}.",
        f"10 20 5060 node2.{NAME}.",
    ]
    assert lookup(server, f"node3.{NAME}", "A") == []


def test_the_lease_holder_publishes_after_its_heartbeat_when_the_nodes_change(server, nodes):
    publisher = cluster_dns.Publisher()
    publisher.after_beat([])  # makes the lease, holds nothing: publishes nothing
    assert Lease.objects.filter(name=cluster_dns.LEASE).exists()
    assert lookup(server, NAME, "A") == []

    held = leases.keep("node1", ttl_seconds=30)
    assert cluster_dns.LEASE in held
    publisher.after_beat(held)
    assert len(lookup(server, NAME, "A")) == 3

    Node.objects.filter(name="node2").update(enabled=False)
    publisher.after_beat(held)  # the next heartbeat
    assert lookup(server, NAME, "A") == ["192.0.2.1", "192.0.2.3"]


def test_a_refused_update_says_so(server, nodes, settings):
    settings.DNS_TSIG_SECRET = base64.b64encode(secrets.token_bytes(32)).decode()  # not the server's key
    with pytest.raises(cluster_dns.DnsUpdateFailed):
        cluster_dns.publish()
    assert lookup(server, NAME, "A") == []
