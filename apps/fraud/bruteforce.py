"""Failed SIP digest authentications, counted per source address and per SIP account.

Every node's OpenSIPS reports each request whose credentials failed (a wrong password or an
unknown user; never the first, credential-less request it challenges) to its call control,
fire and forget (`POST /call-control/v1/auth-failed`). `sip_failure` writes the failure and
judges it against the operator's enabled `sip_auth` controllers:

- `min_count` failures from one address within `window_minutes` ban the address: a
  BAN_ADDRESS alert, whose row in OpenSIPS's `address` table (group OPENSIPS_BAN_GROUP,
  apps.opensips.provisioning) every node reloads and refuses with 403 before anything else;
- `account_limit` failures of one SIP account lock it: a LOCK_ACCOUNT alert, which sets
  SipAccount.locked_at and takes the account out of the `subscriber` table.

Without an enabled controller failures are only counted. An address that is a customer's
endpoint or a supplier's gateway (groups 1 and 2 of `address`) is never banned, only
warned about: banning it would cut the calls it is trusted for. Both actions last the
controller's `block_minutes` (0: until a person undoes the alert), as every alert does.

Cost per failure: one insert, a look for an open ban of the address, and per controller a
look-up of the open episode by its unique key and a count over the (realm, source_ip or
username, created_at) index; a subject already under an open alert is not judged again, so
a flood neither re-counts nor re-announces it.
"""

import ipaddress
import logging
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from apps.fraud.models import Alert, AuthFailure, Controller, Kind
from apps.fraud.services import Subject, raise_alert

logger = logging.getLogger(__name__)

USERNAME_LENGTH = AuthFailure._meta.get_field("username").max_length


def account_name(username: str, domain: str = "") -> str:
    """The name failures of one SIP account are counted under: user@domain, or the user."""
    name = f"{username}@{domain}" if username and domain else username
    return name[:USERNAME_LENGTH]


def sip_failure(
    source_ip: str,
    username: str,
    *,
    node_id: int | None,
    domain: str = "",
    now: datetime | None = None,
) -> bool:
    """Count one failed digest authentication; True when the address is (now) banned."""
    now = now or timezone.now()
    name = account_name(username, domain)
    # Autocommit: the failure counts even if judging it fails below.
    AuthFailure.objects.create(
        realm=AuthFailure.Realm.SIP, source_ip=source_ip, username=name, node_id=node_id, created_at=now
    )
    if is_banned(source_ip):
        return True
    controllers = list(Controller.objects.enabled().filter(kind=Kind.SIP_AUTH, reseller__isnull=True))
    banned = False
    for controller in controllers:
        if not banned:
            banned = _judge_address(controller, source_ip, now)
        if controller.account_limit and username:
            _judge_account(controller, username, domain, name, now)
    return banned


def is_banned(source_ip: str) -> bool:
    """Whether an open alert bans `source_ip` (the address table's group follows open alerts)."""
    return Alert.objects.open().filter(effect=Alert.Effect.BAN_ADDRESS, source_ip=source_ip).exists()


def _failures(controller: Controller, now: datetime, match: dict, *, limit: int) -> int:
    """Failures matching `match` in the controller's window, counted after the subject's last
    episode ended: a ban a person undid (or one that ran out) starts the count again, rather
    than the failures it was raised for banning the address again at its next failure."""
    since = now - timedelta(minutes=controller.window_minutes)
    failures = AuthFailure.objects.filter(realm=AuthFailure.Realm.SIP, created_at__gt=since, **match)
    count = failures.count()
    if count < limit:
        return count
    subject = {"source_ip": match["source_ip"]} if "source_ip" in match else {"username": match["username"]}
    ended = Alert.objects.filter(controller=controller, ended_at__gt=since, **subject).aggregate(
        last=Max("ended_at")
    )["last"]
    return count if ended is None else failures.filter(created_at__gt=ended).count()


def _is_open(controller: Controller, subject: Subject) -> bool:
    return Alert.objects.filter(open_key=subject.key(controller)[:255]).exists()


def _judge_address(controller: Controller, source_ip: str, now: datetime) -> bool:
    """Ban `source_ip` once it has failed `min_count` times in the window; True if banned."""
    subject = Subject(text=f"Source address {source_ip}", source_ip=source_ip)
    if _is_open(controller, subject):
        return False  # already a warning (a ban returned earlier): nothing new to say
    failures = _failures(controller, now, {"source_ip": source_ip}, limit=controller.min_count)
    if failures < controller.min_count:
        return False
    effect = Alert.Effect.BAN_ADDRESS
    detail = f"{failures} failed SIP authentications in {controller.window_minutes} min."
    if is_trusted_address(source_ip):
        effect = Alert.Effect.WARNING
        detail += " Not banned: a customer's endpoint or a supplier's gateway has this address."
    alert = _raise(controller, subject, effect=effect, measured=failures, detail=detail, now=now)
    return alert is not None and alert.effect == Alert.Effect.BAN_ADDRESS


def _judge_account(controller: Controller, username: str, domain: str, name: str, now: datetime) -> None:
    """Lock the SIP account `username`(@`domain`) once it has failed `account_limit` times."""
    from apps.peers.models import SipAccount

    accounts = SipAccount.objects.filter(username=username, locked_at__isnull=True).select_related("peer")
    if domain:
        accounts = accounts.filter(domain=domain)
    accounts = list(accounts[:2])
    if len(accounts) != 1:
        return  # unknown (or ambiguous without a domain): counted, nothing to lock
    account = accounts[0]
    subject = Subject(
        text=f"SIP account {account.username}@{account.domain}",
        peer_id=account.peer_id,
        reseller_id=account.peer.reseller_id,
        username=name,
        sip_account_id=account.pk,
    )
    if _is_open(controller, subject):
        return
    failures = _failures(controller, now, {"username": name}, limit=controller.account_limit)
    if failures < controller.account_limit:
        return
    detail = f"{failures} failed SIP authentications in {controller.window_minutes} min."
    _raise(controller, subject, effect=Alert.Effect.LOCK_ACCOUNT, measured=failures, detail=detail, now=now)


def _raise(
    controller: Controller, subject: Subject, *, effect: str, measured: int, detail: str, now: datetime
):
    """raise_alert with the threshold of the effect (the address's or the account's)."""
    threshold = controller.min_count if effect != Alert.Effect.LOCK_ACCOUNT else controller.account_limit
    alert, _ = raise_alert(
        controller,
        subject,
        effect=effect,
        measured=measured,
        threshold=threshold,
        attempts=measured,
        detail=detail,
        now=now,
    )
    return alert


def is_trusted_address(source_ip: str) -> bool:
    """Whether `source_ip` is in a customer's or a supplier's rows of the `address` table."""
    from apps.opensips.models import Address

    address = ipaddress.ip_address(source_ip)
    rows = Address.objects.filter(grp__in=(Address.CUSTOMER_GROUP, Address.SUPPLIER_GROUP)).values_list(
        "ip", "mask"
    )
    for ip, mask in rows.iterator():
        try:
            network = ipaddress.ip_network(f"{ip}/{mask}", strict=False)
        except ValueError:
            continue
        if address.version == network.version and address in network:
            return True
    return False
