"""Connectivity: how the customer reaches the switch, and a new password for its SIP accounts.

Registration state is read from OpenSIPS's shared location table, the same rows every
node's registrar writes, so the page tells which node took a device without asking any.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib import messages
from django.db.models import Count, Q
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from apps.core.errors import DomainError
from apps.dids.models import Did
from apps.nodes.models import Node
from apps.opensips.models import Location
from apps.peers import services as peer_services
from apps.peers.interconnection import interconnection
from apps.peers.models import Endpoint, SipAccount
from apps.portal.forms_account import SipPasswordForm
from apps.portal.views.common import context, customer, customer_required
from apps.tenancy.scope import Scope, access

# What the Connectivity page lists of the customer's numbers; the Numbers pages show them all.
DIDS_SHOWN = 10
# OpenSIPS listens on UDP and TCP on every node (deploy/opensips/opensips.cfg).
TRANSPORTS = "UDP, TCP"


@dataclass(frozen=True)
class Contact:
    """One registered device of a SIP account."""

    contact: str
    user_agent: str
    until: datetime | None  # None: registered without expiry
    socket: str
    received: str
    node: Node | None


def _parse_socket(socket: str) -> tuple[str, int] | None:
    """('10.0.0.1', 5060) from OpenSIPS's "udp:10.0.0.1:5060" (IPv6 in brackets); None if unreadable."""
    try:
        _proto, rest = socket.split(":", 1)
        host, port = rest.rsplit(":", 1)
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def _node_of(socket: str, nodes: dict[tuple[str, int], Node]) -> Node | None:
    parsed = _parse_socket(socket or "")
    return nodes.get(parsed) if parsed else None


def _shared_usernames(names: set[str]) -> set[str]:
    """The usernames of `names` that more than one SIP account (of any customer) has."""
    if not names:
        return set()
    return set(
        SipAccount.objects.filter(username__in=names)
        .values("username")
        .annotate(logins=Count("pk"))
        .filter(logins__gt=1)
        .values_list("username", flat=True)
    )


def registrations(accounts, *, now: datetime | None = None) -> dict[int, list[Contact]]:
    """The live contacts of each of `accounts`, by account id, from the location table."""
    if not accounts:
        return {}
    now = now or timezone.now()
    # usrloc keeps an expiry as a Unix time, 0 for a contact that never expires; the domain
    # is empty when OpenSIPS runs without use_domain.
    rows = list(
        Location.objects.filter(username__in={account.username for account in accounts})
        .filter(Q(expires=0) | Q(expires__gt=int(now.timestamp())))
        .order_by("username", "-expires")
        .only("username", "domain", "contact", "user_agent", "expires", "socket", "received")
    )
    if not rows:
        return {account.pk: [] for account in accounts}
    by_socket = {(node.sip_address, node.sip_port): node for node in Node.objects.all()}
    by_aor: dict[tuple[str, str], list[Contact]] = {}
    for row in rows:
        by_aor.setdefault((row.username, (row.domain or "").lower()), []).append(
            Contact(
                contact=row.contact,
                user_agent=row.user_agent,
                until=datetime.fromtimestamp(row.expires, tz=UTC) if row.expires else None,
                socket=row.socket or "",
                received=row.received or "",
                node=_node_of(row.socket, by_socket),
            )
        )
    # A contact without a domain names no tenant: it is an account's only when no other
    # account has the username, or one customer would see another's devices.
    shared = _shared_usernames({username for username, domain in by_aor if not domain})
    return {
        account.pk: by_aor.get((account.username, account.domain.lower()), [])
        + ([] if account.username in shared else by_aor.get((account.username, ""), []))
        for account in accounts
    }


def _page(request, scope: Scope, *, forms: dict | None = None):
    peer = customer(scope)
    accounts = list(SipAccount.objects.visible_to(scope).order_by("username", "domain"))
    contacts = registrations(accounts)
    forms = forms or {}
    for account in accounts:
        account.contacts = contacts.get(account.pk, [])
        account.password_form = forms.get(account.pk) or SipPasswordForm(account_id=account.pk)
    dids = Did.objects.visible_to(scope).only("id", "number", "last_number", "enabled").order_by("number")
    addresses, fallback = interconnection(peer)
    page = context(
        peer,
        nav="connectivity",
        accounts=accounts,
        endpoints=Endpoint.objects.visible_to(scope).order_by("ip", "mask"),
        dids=dids[:DIDS_SHOWN],
        did_count=dids.count(),
        addresses=addresses,
        fallback=fallback,
        transports=TRANSPORTS,
        codecs=", ".join(filter(None, (codec.strip() for codec in peer.codecs.split(",")))),
    )
    return render(request, "portal/connectivity.html", page, status=400 if forms else 200)


@never_cache
@customer_required
def connectivity(request, scope: Scope):
    """The customer's SIP accounts and devices, IP endpoints, numbers and where to send calls."""
    return _page(request, scope)


@never_cache
@require_POST
@customer_required
def sip_password(request, scope: Scope, pk: int):
    """Give one of the customer's SIP accounts a new password; anyone else's is a 404."""
    account = access(SipAccount.objects.select_related("peer"), scope, pk)
    form = SipPasswordForm(request.POST, account_id=account.pk)
    if form.is_valid():
        try:
            peer_services.set_sip_password(account, actor=scope, password=form.cleaned_data["password1"])
        except DomainError as exc:
            form.add_error("password1", exc.message)
    if not form.is_valid():
        return _page(request, scope, forms={account.pk: form})
    messages.success(
        request,
        _("The password of %(account)s is changed; devices must sign in with the new one.")
        % {"account": account},
    )
    return redirect(reverse("portal:connectivity") + f"#sip-{account.pk}")


urlpatterns = [
    path("connectivity/", connectivity, name="connectivity"),
    path("connectivity/sip/<int:pk>/password/", sip_password, name="sip-password"),
]
