"""The portal's Connectivity page: SIP accounts and their devices, a new SIP password, IP
endpoints, numbers and the interconnection sheet, each customer's own and nobody else's."""

from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.core import changes
from apps.nodes.models import ClusterSettings
from apps.opensips.models import Location
from apps.peers import services as peer_services
from apps.peers.models import SipAccount
from apps.peers.services import sip_digests
from apps.tenancy.scope import Scope
from tests.conftest import Cast
from tests.factories import NodeFactory

SYSTEM = Scope.system()
CONNECTIVITY = reverse("portal:connectivity")
OLD_PASSWORD = "old-Pass-2024"
NEW_PASSWORD = "new-Pass-2025"


def password_url(account) -> str:
    return reverse("portal:sip-password", args=[account.pk])


def register(account, *, seconds: int, socket: str | None = None, agent: str = "Yealink T46U") -> Location:
    """A contact of `account` in OpenSIPS's location table, expiring `seconds` from now (0: never)."""
    expires = int(timezone.now().timestamp()) + seconds if seconds else 0
    return Location.objects.create(
        username=account.username,
        domain=account.domain,
        contact=f"sip:{account.username}@198.51.100.7:5062",
        received="sip:203.0.113.9:40312",
        user_agent=agent,
        socket=socket,
        expires=expires,
    )


@pytest.fixture
def net(cast: Cast):
    """Each reseller's customer with a SIP account and an IP endpoint; A's has a number."""
    from apps.dids import services as did_services

    a_sip = peer_services.add_sip_account(
        cast.a.customer, actor=SYSTEM, username="a-pbx", domain="sip.example.net", password=OLD_PASSWORD
    )
    b_sip = peer_services.add_sip_account(
        cast.b.customer, actor=SYSTEM, username="b-pbx", domain="sip.example.net", password=OLD_PASSWORD
    )
    peer_services.add_endpoint(cast.a.customer, actor=SYSTEM, ip="192.0.2.10", description="A office")
    peer_services.add_endpoint(cast.b.customer, actor=SYSTEM, ip="198.51.100.20", description="B office")
    did = did_services.create_did(actor=SYSTEM, number="442079461111", customer=cast.a.customer, targets=[])
    did_services.create_did(actor=SYSTEM, number="442079462222", customer=cast.b.customer, targets=[])
    return {"a": a_sip, "b": b_sip, "did": did}


def test_a_customer_sees_its_accounts_devices_endpoints_and_numbers(client, cast, net):
    register(net["a"], seconds=600, socket=f"udp:{cast.node.sip_address}:{cast.node.sip_port}")
    register(net["b"], seconds=600, agent="B phone")
    client.force_login(cast.a.customer_user)

    page = client.get(CONNECTIVITY)

    body = page.content.decode()
    assert page.status_code == 200
    assert "a-pbx@sip.example.net" in body and "b-pbx" not in body
    assert "Yealink T46U" in body and "B phone" not in body
    assert "sip:203.0.113.9:40312" in body
    # The socket that took the registration names the node.
    assert '<td class="node">node1</td>' in body
    assert "registered until" in body
    assert "192.0.2.10/32" in body and "A office" in body
    assert "198.51.100.20" not in body and "B office" not in body
    assert "442079461111" in body and "442079462222" not in body
    assert reverse("portal:number", args=[net["did"].pk]) in body


def test_an_expired_registration_reads_as_not_registered(client, cast, net):
    register(net["a"], seconds=-5)
    client.force_login(cast.a.customer_user)

    body = client.get(CONNECTIVITY).content.decode()

    assert "Yealink T46U" not in body
    assert "Not registered: no device is signed in" in body


def test_a_socket_no_node_has_is_shown_as_is(client, cast, net):
    register(net["a"], seconds=0, socket="udp:0.0.0.0:5060")
    client.force_login(cast.a.customer_user)

    body = client.get(CONNECTIVITY).content.decode()

    assert "udp:0.0.0.0:5060" in body
    assert "without expiry" in body


def test_a_locked_account_says_so(client, cast, net):
    SipAccount.objects.filter(pk=net["a"].pk).update(locked_at=timezone.now() - timedelta(minutes=3))
    client.force_login(cast.a.customer_user)

    body = client.get(CONNECTIVITY).content.decode()

    assert "Locked since" in body and "fraud control" in body


def test_the_sheet_lists_the_assigned_nodes_else_every_enabled_one(client, cast, net):
    other = NodeFactory(name="node2", public_hostname="sip2.example.net")
    NodeFactory(name="node3", enabled=False)
    peer_services.update_peer(
        cast.a.customer,
        actor=SYSTEM,
        changes={"codecs": "PCMA,G722", "tech_prefix": "4711", "max_calls": 30, "max_cps": 5},
    )
    client.force_login(cast.a.customer_user)

    body = client.get(CONNECTIVITY).content.decode()
    assert body.count('<tr class="address">') == 2
    assert cast.node.sip_address in body and other.sip_address in body and "sip2.example.net" in body
    assert "PCMA, G722" in body and "4711" in body
    assert '<dd id="max-calls">30</dd>' in body and '<dd id="max-cps">5</dd>' in body

    peer_services.assign_peer_to_nodes(cast.a.customer, [other], actor=SYSTEM)
    body = client.get(CONNECTIVITY).content.decode()
    assert body.count('<tr class="address">') == 1
    assert other.sip_address in body and cast.node.sip_address not in body

    # Its only node disabled, the customer has nowhere to send calls (the others refuse it).
    type(other).objects.filter(pk=other.pk).update(enabled=False)
    body = client.get(CONNECTIVITY).content.decode()
    assert body.count('<tr class="address">') == 0
    assert "No node is ready for your calls yet" in body


def test_with_service_level_ha_the_sheet_names_the_nodes_that_serve_while_the_customers_are_down(
    client, cast, net
):
    other = NodeFactory(name="node2", public_hostname="sip2.example.net")
    NodeFactory(name="node3", enabled=False)
    peer_services.assign_peer_to_nodes(cast.a.customer, [other], actor=SYSTEM)
    client.force_login(cast.a.customer_user)
    assert 'id="fallback"' not in client.get(CONNECTIVITY).content.decode()

    ClusterSettings.objects.update_or_create(
        pk=ClusterSettings.SINGLETON_ID, defaults={"serve_when_assigned_nodes_down": True}
    )
    body = client.get(CONNECTIVITY).content.decode()

    assert body.count('<tr class="address">') == 1 and other.sip_address in body
    fallback = body[body.index('id="fallback"') :].split("</p>")[0]
    assert f"{cast.node.sip_address}:{cast.node.sip_port}" in fallback
    assert other.sip_address not in fallback and "node3" not in body


def test_with_the_distributor_the_sheet_gives_the_one_shared_address(client, cast, net):
    NodeFactory(name="node2")
    ClusterSettings.objects.update_or_create(
        pk=ClusterSettings.SINGLETON_ID,
        defaults={"shared_ip": "198.51.100.100", "distribute_shared_ip": True},
    )
    client.force_login(cast.a.customer_user)
    body = client.get(CONNECTIVITY).content.decode()
    assert body.count('<tr class="address">') == 1
    assert "198.51.100.100" in body and "Any node" in body and cast.node.sip_address not in body


def test_the_admin_peer_page_shows_the_peers_sheet(login, cast, net):
    other = NodeFactory(name="node2", sip_address="198.51.100.22")
    peer_services.assign_peer_to_nodes(cast.a.customer, [other], actor=SYSTEM)
    ClusterSettings.objects.update_or_create(
        pk=ClusterSettings.SINGLETON_ID, defaults={"serve_when_assigned_nodes_down": True}
    )
    body = (
        login(cast.operator)
        .get(reverse("admin:peers_peer_change", args=[cast.a.customer.pk]))
        .content.decode()
    )
    sheet = body[body.index("Addresses to send calls to") :]
    assert "198.51.100.22:5060 (node2)" in sheet
    assert f"While these nodes are down (service-level HA): {cast.node.sip_address}:5060" in sheet


def test_with_shared_ip_origination_the_sheet_gives_the_shared_address(client, cast, net):
    NodeFactory(name="node2")
    ClusterSettings.objects.update_or_create(
        pk=ClusterSettings.SINGLETON_ID,
        defaults={"origination_mode": ClusterSettings.OriginationMode.SHARED, "shared_ip": "192.0.2.250"},
    )
    client.force_login(cast.a.customer_user)

    body = client.get(CONNECTIVITY).content.decode()

    assert body.count('<tr class="address">') == 1
    assert "192.0.2.250" in body and cast.node.sip_address not in body


ANNOUNCED: list = []


def record(batch) -> None:
    """An after-commit consumer for these tests: keeps every change it is given."""
    ANNOUNCED.extend(batch)


@pytest.fixture
def announced(monkeypatch, django_capture_on_commit_callbacks):
    """`with announced() as seen:` the changes announced by what runs inside, once committed."""
    monkeypatch.setattr(changes, "AFTER_COMMIT", (*changes.AFTER_COMMIT, f"{__name__}.record"))

    @contextmanager
    def capture():
        ANNOUNCED.clear()
        seen: dict[str, set] = {}
        with django_capture_on_commit_callbacks(execute=True):
            yield seen
        for change in ANNOUNCED:
            seen.setdefault(change.kind, set()).update(change.ids)
        ANNOUNCED.clear()

    return capture


def test_a_customer_changes_a_sip_password_which_is_announced_and_audited(client, cast, net, announced):
    client.force_login(cast.a.customer_user)

    with announced() as seen:
        response = client.post(
            password_url(net["a"]),
            {f"sip{net['a'].pk}-password1": NEW_PASSWORD, f"sip{net['a'].pk}-password2": NEW_PASSWORD},
        )

    assert response.status_code == 302
    assert response["Location"] == f"{CONNECTIVITY}#sip-{net['a'].pk}"
    account = SipAccount.objects.get(pk=net["a"].pk)
    assert (account.ha1, account.ha1_sha256) == sip_digests("a-pbx", "sip.example.net", NEW_PASSWORD)
    # The subscriber table follows from the announcement (apps.opensips.provisioning).
    assert net["a"].pk in seen["peers.SipAccount"]
    entry = AuditEntry.objects.get(action="sipaccount.password_changed", object_id=str(account.pk))
    assert entry.actor == cast.a.customer_user
    assert "devices must sign in with the new one" in client.get(CONNECTIVITY).content.decode()


@pytest.mark.parametrize(
    ("first", "second", "error"),
    [
        ("short1", "short1", "at least 10 characters"),
        ("lettersonlyhere", "lettersonlyhere", "Mix letters and digits"),
        (NEW_PASSWORD, NEW_PASSWORD + "x", "The two passwords differ"),
    ],
)
def test_a_weak_or_mistyped_sip_password_is_refused(client, cast, net, first, second, error):
    client.force_login(cast.a.customer_user)
    before = SipAccount.objects.get(pk=net["a"].pk).ha1

    response = client.post(
        password_url(net["a"]), {f"sip{net['a'].pk}-password1": first, f"sip{net['a'].pk}-password2": second}
    )

    assert response.status_code == 400
    assert error in response.content.decode()
    assert SipAccount.objects.get(pk=net["a"].pk).ha1 == before


def test_someone_elses_sip_password_cannot_be_changed(client, cast, net):
    client.force_login(cast.a.customer_user)
    before = SipAccount.objects.get(pk=net["b"].pk).ha1

    response = client.post(
        password_url(net["b"]),
        {f"sip{net['b'].pk}-password1": NEW_PASSWORD, f"sip{net['b'].pk}-password2": NEW_PASSWORD},
    )

    assert response.status_code == 404
    assert SipAccount.objects.get(pk=net["b"].pk).ha1 == before


def test_the_password_form_takes_only_posts(client, cast, net):
    client.force_login(cast.a.customer_user)

    assert client.get(password_url(net["a"])).status_code == 405


@pytest.mark.parametrize("who", ["operator", "staff_a", "staff_b", "customer_a", "customer_b"])
def test_scoping_matrix(client, cast, net, who):
    """Only a customer gets the page, with its own accounts and endpoints; staff are refused."""
    user = {
        "operator": cast.operator,
        "staff_a": cast.a.staff,
        "staff_b": cast.b.staff,
        "customer_a": cast.a.customer_user,
        "customer_b": cast.b.customer_user,
    }[who]
    client.force_login(user)

    page = client.get(CONNECTIVITY)
    body = page.content.decode()
    own = {"customer_a": "a", "customer_b": "b"}.get(who)
    if own is None:
        assert page.status_code == 403
        assert "a-pbx" not in body and "b-pbx" not in body
        for account in (net["a"], net["b"]):
            response = client.post(password_url(account), {})
            assert response.status_code == 403
        return
    other = "b" if own == "a" else "a"
    assert page.status_code == 200
    assert f"{own}-pbx@" in body and f"{other}-pbx@" not in body
    assert ("192.0.2.10" in body) == (own == "a") and ("198.51.100.20" in body) == (own == "b")
    data = {f"sip{net[other].pk}-password1": NEW_PASSWORD, f"sip{net[other].pk}-password2": NEW_PASSWORD}
    assert client.post(password_url(net[other]), data).status_code == 404


def test_anonymous_visitors_are_sent_to_sign_in(client, db):
    response = client.get(CONNECTIVITY)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("portal:login"))


def test_the_page_costs_a_fixed_number_of_queries(client, cast, net, django_assert_max_num_queries):
    for n in range(5):
        account = peer_services.add_sip_account(
            cast.a.customer,
            actor=SYSTEM,
            username=f"a-desk{n}",
            domain="sip.example.net",
            password=OLD_PASSWORD,
        )
        register(account, seconds=600, socket=f"udp:{cast.node.sip_address}:5060")
    client.force_login(cast.a.customer_user)

    with django_assert_max_num_queries(13):
        response = client.get(CONNECTIVITY)

    assert response.content.decode().count('<tr class="contact">') == 5


def test_a_contact_without_a_domain_is_shown_only_when_its_username_is_unique(client, cast, net):
    """OpenSIPS without use_domain writes no domain: the username alone must then name the account."""
    b_twin = peer_services.add_sip_account(
        cast.b.customer, actor=SYSTEM, username="a-pbx", domain="other.example.net", password=OLD_PASSWORD
    )
    Location.objects.create(
        username="a-pbx", domain="", contact="sip:a-pbx@192.0.2.99", expires=0, user_agent="Twin"
    )
    client.force_login(cast.a.customer_user)

    assert "Twin" not in client.get(CONNECTIVITY).content.decode()

    peer_services.remove_child(b_twin, actor=SYSTEM)
    assert "Twin" in client.get(CONNECTIVITY).content.decode()
