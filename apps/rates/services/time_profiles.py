"""Time profiles (weekend, offpeak, night): the hours of the week prices and routing rules apply in.

The operator's alone: a profile is shared by every price list and routing plan. Its name is
what price lists write in their period column, so it is fixed once created (rows already
imported keep naming it), and a profile is not deleted while a rate or a rule names it.
"""

from django.db.models import ProtectedError

from apps.audit import services as audit
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.core.errors import DomainError, NotAllowed
from apps.core.services import apply_changes, save_object
from apps.rates.models import Rate, TimeProfile
from apps.tenancy.scope import Scope

PROFILE_SETTINGS = ("windows", "description")


def _ensure_operator(actor: Scope) -> None:
    if not actor.is_operator:
        raise NotAllowed("Only the operator manages time profiles.")


def known_periods() -> frozenset[str]:
    """The names a price list's period column may use."""
    return frozenset(TimeProfile.objects.values_list("name", flat=True))


def _announce(profile: TimeProfile, rule_ids: list[int]) -> None:
    # Call control's snapshot holds each routing rule's windows compiled: a profile's change is
    # a change of the rules using it. Prices read profiles through apps.rates.lookup, which
    # re-reads them on its own clock.
    announce("rates.TimeProfile", [profile.pk])
    if rule_ids:
        announce("routing.RoutingRule", rule_ids, fields=["time_profile"])


def _rules_of(profile: TimeProfile) -> list[int]:
    return list(profile.routing_rules.values_list("pk", flat=True))


@retry_on_conflict
def create_time_profile(*, actor: Scope, name: str, windows: str, **fields) -> TimeProfile:
    """Name some hours of the week, e.g. weekend = 'Sat-Sun'."""
    _ensure_operator(actor)
    profile = TimeProfile(name=(name or "").strip().lower(), windows=windows)
    apply_changes(profile, fields, allowed=PROFILE_SETTINGS)
    save_object(profile, actor=actor, action="timeprofile.created")
    _announce(profile, [])
    return profile


@retry_on_conflict
def update_time_profile(profile: TimeProfile, *, actor: Scope, changes: dict) -> TimeProfile:
    """Change a profile's windows or description (never its name): live at once for calls."""
    _ensure_operator(actor)
    if "name" in changes and changes["name"] != profile.name:
        raise DomainError(
            "A time profile's name is fixed: price lists name it. Create another.", field="name"
        )
    changes = {name: value for name, value in changes.items() if name != "name"}
    current = TimeProfile.objects.select_for_update().get(pk=profile.pk)
    apply_changes(current, changes, allowed=PROFILE_SETTINGS)
    save_object(current, actor=actor, action="timeprofile.changed")
    _announce(current, _rules_of(current))
    return current


def profile_users(profile: TimeProfile) -> list[str]:
    """What keeps `profile` from being deleted: rules routing by it, rates priced in it."""
    users = []
    rules = profile.routing_rules.count()
    if rules:
        users.append(f"{rules} routing rule{'s' if rules > 1 else ''}")
    # Any version: a re-rated call of last month still looks its period up.
    if Rate.objects.filter(period=profile.name).exists():
        users.append("rates of price lists (history included)")
    return users


@retry_on_conflict
def delete_time_profile(profile: TimeProfile, *, actor: Scope) -> None:
    """Delete a profile nothing uses."""
    _ensure_operator(actor)
    current = TimeProfile.objects.select_for_update().get(pk=profile.pk)
    users = profile_users(current)
    if users:
        raise DomainError(f"{current.name} is in use by {' and '.join(users)}.")
    audit.record(actor, "timeprofile.deleted", current)
    pk = current.pk
    try:
        current.delete()
    except ProtectedError:
        raise DomainError(f"{current.name} is in use by a routing rule.") from None
    announce("rates.TimeProfile", [pk])
