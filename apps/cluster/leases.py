"""Leases: cluster-wide work done by exactly one node at a time, kept in the database.

A lease is a row (name, holder, expires_at). `acquire` takes it when it is free or expired,
or renews it when the caller already holds it, in one conditional UPDATE; the INSERT of a
lease that does not exist yet is the only other write. Why that is enough:

- Plain InnoDB and PostgreSQL at READ COMMITTED: two UPDATEs of the same expired lease
  queue on its row lock; the second re-reads the row after the first commits, finds it held
  and not expired, and changes nothing. Two INSERTs of a new lease: the second waits for
  the first and gets a duplicate key, which means "someone else has it".
- Galera: the two UPDATEs (or INSERTs) run on different members without seeing each other's
  locks; certification at commit lets the first through and aborts the second with a
  deadlock error, which `retry_on_conflict` replays; the replay reads the winner's row.
- A member cut off from the primary component cannot commit at all, so it cannot renew
  (or take) a lease; the others take it over once it expires.

Times are the writing node's clock: nodes run NTP, and a node whose clock runs ahead by d
seconds sees leases expire d seconds early. The bound for taking over from a dead holder is
its TTL (plus the skew), after the holder's last renewal.
"""

from datetime import UTC, datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from apps.cluster.models import Lease
from apps.core.db import retry_on_conflict

NEVER = datetime(2000, 1, 1, tzinfo=UTC)  # expires_at of a lease nobody took yet


def _check(name: str, holder: str | None = None) -> None:
    if not name or len(name) > 100:
        raise ValueError(f"lease name {name!r}: 1 to 100 characters")
    if holder is not None and (not holder or len(holder) > 100):
        raise ValueError(f"lease holder {holder!r}: 1 to 100 characters")


def acquire(name: str, holder: str, ttl_seconds: float, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Take lease `name` for `holder` for `ttl_seconds`, or renew it; False if another holds it."""
    _check(name, holder)
    if ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds {ttl_seconds!r}: more than 0")
    return retry_on_conflict(using=using)(_acquire)(name, holder, ttl_seconds, using)


def _acquire(name: str, holder: str, ttl_seconds: float, using: str) -> bool:
    now = timezone.now()
    expires = now + timedelta(seconds=ttl_seconds)
    leases = Lease.objects.using(using).filter(name=name)
    # acquired_at first: MariaDB evaluates SET assignments left to right, so the CASE must
    # read `holder` before it is overwritten (PostgreSQL and SQLite read the old row anyway).
    taken = leases.filter(Q(holder=holder) | Q(expires_at__lt=now)).update(
        acquired_at=Case(When(holder=holder, then=F("acquired_at")), default=Value(now)),
        holder=holder,
        expires_at=expires,
    )
    if taken:
        return True
    if leases.exists():
        return False
    try:
        with transaction.atomic(using=using):
            Lease.objects.using(using).create(name=name, holder=holder, expires_at=expires, acquired_at=now)
    except IntegrityError:
        return False  # created by another holder between our UPDATE and INSERT
    return True


def holder(name: str, *, using: str = DEFAULT_DB_ALIAS) -> str | None:
    """The holder of lease `name`, or None when nobody holds it (free or expired)."""
    _check(name)
    lease = Lease.objects.using(using).filter(name=name, expires_at__gte=timezone.now()).first()
    return (lease.holder or None) if lease else None


def release(name: str, holder: str, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Give lease `name` up if `holder` holds it, so that another node may take it at once."""
    _check(name, holder)

    @retry_on_conflict(using=using)
    def _release() -> bool:
        return bool(
            Lease.objects.using(using)
            .filter(name=name, holder=holder)
            .update(holder="", expires_at=timezone.now() - timedelta(seconds=1))
        )

    return _release()


def ensure(name: str, *, follows_heartbeat: bool = True, using: str = DEFAULT_DB_ALIAS) -> Lease:
    """Create lease `name` free (if absent), for the heartbeats to take and keep."""
    _check(name)

    @retry_on_conflict(using=using)
    def _ensure() -> Lease:
        lease, created = Lease.objects.using(using).get_or_create(
            name=name,
            defaults={"expires_at": NEVER, "acquired_at": NEVER, "follows_heartbeat": follows_heartbeat},
        )
        if not created and lease.follows_heartbeat != follows_heartbeat:
            Lease.objects.using(using).filter(pk=lease.pk).update(follows_heartbeat=follows_heartbeat)
        return lease

    return _ensure()


def keep(holder: str, *, ttl_seconds: float, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Renew or take every lease that follows the heartbeat; the names `holder` now holds."""
    names = Lease.objects.using(using).filter(follows_heartbeat=True).values_list("name", flat=True)
    return [name for name in names if acquire(name, holder, ttl_seconds, using=using)]
