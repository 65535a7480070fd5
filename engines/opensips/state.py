"""What OpenSIPS reports over MI, as dataclasses, and the readers of its JSON replies.

The reply shapes are those of OpenSIPS 3.6.8 (recorded in tests/engines/replies). A
reader takes one command's `result` and never raises on a missing optional field: an
older or newer OpenSIPS that drops a field shows an empty value, not a broken page.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any


class DialogState(IntEnum):
    """A dialog's state as dlg_list reports it (DLG_STATE_* in modules/dialog/dlg_hash.h)."""

    UNCONFIRMED = 1  # INVITE seen, no reply yet
    EARLY = 2  # ringing: a provisional reply with a to-tag
    CONFIRMED_NA = 3  # answered, ACK not seen yet
    CONFIRMED = 4  # answered and acknowledged: the call is up
    DELETED = 5  # ended; OpenSIPS keeps it listed for a moment

    @property
    def label(self) -> str:
        return {1: "trying", 2: "ringing", 3: "answered", 4: "up", 5: "ended"}[self.value]


@dataclass(frozen=True)
class Dialog:
    """One call as OpenSIPS's dialog module holds it."""

    id: str  # "<hash entry>.<hash id>", what dlg_end_dlg takes
    call_id: str
    from_uri: str
    to_uri: str
    state: DialogState | int
    started_at: datetime | None
    # When OpenSIPS ends it with BYEs (the granted maximum duration); None without a timeout.
    ends_at: datetime | None
    caller_tag: str = ""
    callee_tag: str = ""
    # Dialog variables ($dlg_val) and profiles with their values, when read with dlg_list_ctx.
    values: dict[str, str] = field(default_factory=dict)
    profiles: tuple[tuple[str, str], ...] = ()

    @property
    def active(self) -> bool:
        return self.state != DialogState.DELETED


@dataclass(frozen=True)
class Contact:
    """One registered contact of an address of record (usrloc)."""

    aor: str
    contact: str
    expires: int  # seconds left
    call_id: str = ""
    user_agent: str = ""
    socket: str = ""
    state: str = ""
    domain: str = "location"


@dataclass(frozen=True)
class Uptime:
    """How long OpenSIPS has run, as its uptime command says."""

    now: str
    up_since: str
    seconds: int | None  # None when "Up time" is not "<n> [sec]"


@dataclass(frozen=True)
class GatewayStatus:
    """A drouting gateway and whether OpenSIPS sends calls to it."""

    id: str
    address: str
    state: str  # "Active", "Inactive", "Probing"
    partition: str = ""

    @property
    def active(self) -> bool:
        return self.state.lower() == "active"


@dataclass(frozen=True)
class Registrant:
    """An outbound registration of uac_registrant to a supplier's registrar."""

    aor: str
    registrar: str
    state: str  # e.g. "REGISTERED_STATE", "REGISTERING_STATE", "WRONG_CREDENTIALS_STATE"
    enabled: bool
    expires: int | None
    binding: str = ""
    socket: str = ""
    last_register_sent: str = ""

    @property
    def registered(self) -> bool:
        return self.state == "REGISTERED_STATE"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _epoch(value: Any) -> datetime | None:
    seconds = _int(value)
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds else None


def _state(value: Any) -> DialogState | int:
    number = _int(value) or 0
    try:
        return DialogState(number)
    except ValueError:
        return number


def _pairs(items: Any) -> list[tuple[str, str]]:
    # dlg_list_ctx lists values and profiles as one-key objects: [{"peer": "42"}, ...].
    pairs = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            pairs.extend((str(key), _text(value)) for key, value in item.items())
    return pairs


def read_dialog(item: dict) -> Dialog:
    """A Dialog from one entry of dlg_list's or dlg_list_ctx's "Dialogs"."""
    callees = item.get("CALLEES") or [{}]
    context = item.get("context") or {}
    return Dialog(
        id=_text(item.get("ID")),
        call_id=_text(item.get("callid")),
        from_uri=_text(item.get("from_uri")),
        to_uri=_text(item.get("to_uri")),
        state=_state(item.get("state")),
        started_at=_epoch(item.get("timestart")),
        ends_at=_epoch(item.get("timeout")),
        caller_tag=_text(item.get("caller_tag")),
        callee_tag=_text(callees[0].get("callee_tag") if isinstance(callees[0], dict) else ""),
        values=dict(_pairs(context.get("values"))),
        profiles=tuple(_pairs(context.get("profiles"))),
    )


def read_contacts(aor: str, contacts: Any, *, domain: str = "location") -> list[Contact]:
    """Contacts from the "Contacts" list of ul_dump or ul_show_contact."""
    return [
        Contact(
            aor=aor,
            contact=_text(item.get("Contact")),
            expires=_int(item.get("Expires")) or 0,
            call_id=_text(item.get("Callid")),
            user_agent=_text(item.get("User-agent")),
            socket=_text(item.get("Socket")),
            state=_text(item.get("State")),
            domain=domain,
        )
        for item in contacts or []
        if isinstance(item, dict)
    ]


def read_ul_dump(result: Any) -> list[Contact]:
    """Every contact of every usrloc domain from ul_dump's result."""
    contacts = []
    for domain in (result or {}).get("Domains") or []:
        for aor in domain.get("AORs") or []:
            contacts += read_contacts(
                _text(aor.get("AOR")), aor.get("Contacts"), domain=_text(domain.get("name"))
            )
    return contacts


_UP_TIME = re.compile(r"\s*(\d+)\s*\[sec\]")


def read_uptime(result: Any) -> Uptime:
    result = result or {}
    match = _UP_TIME.match(_text(result.get("Up time")))
    return Uptime(
        now=_text(result.get("Now")),
        up_since=_text(result.get("Up since")),
        seconds=int(match.group(1)) if match else None,
    )


def read_gateways(result: Any) -> list[GatewayStatus]:
    """dr_gw_status's gateways; with drouting partitions, those of every partition."""
    result = result or {}
    partitions = result.get("Partitions")
    if partitions is None:
        partitions = [{"name": "", "Gateways": result.get("Gateways") or []}]
    return [
        GatewayStatus(
            id=_text(gateway.get("ID")),
            address=_text(gateway.get("IP")),
            state=_text(gateway.get("State")),
            partition=_text(partition.get("name")),
        )
        for partition in partitions
        for gateway in partition.get("Gateways") or []
    ]


def read_registrants(result: Any) -> list[Registrant]:
    return [
        Registrant(
            aor=_text(item.get("AOR")),
            registrar=_text(item.get("registrar")),
            state=_text(item.get("state")),
            enabled=_text(item.get("enabled")).lower() == "yes",
            expires=_int(item.get("expires")),
            binding=_text(item.get("binding")),
            socket=_text(item.get("socket")),
            last_register_sent=_text(item.get("last_register_sent")),
        )
        for item in (result or {}).get("Records") or []
        if isinstance(item, dict)
    ]
