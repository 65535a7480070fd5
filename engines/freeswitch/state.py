"""What FreeSWITCH reports over ESL, as dataclasses, and the readers of its replies.

The reply shapes are those of FreeSWITCH 1.10.12 (mod_commands' `status`, `show`,
`uuid_buglist`; mod_sofia's `sofia xmlstatus`), recorded in tests/engines/replies/freeswitch.
A reader takes one command's text and never raises on a missing optional field: a
FreeSWITCH that drops or adds a field shows an empty value, not a broken page. A reply that
is not the command's shape at all raises ValueError, which the client turns into ESLError.
"""

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

# status_function in mod_commands.c writes these lines, in this order (1.10.12).
_UPTIME = re.compile(
    r"UP (\d+) years?, (\d+) days?, (\d+) hours?, (\d+) minutes?, (\d+) seconds?, (\d+) milliseconds?"
)
_VERSION = re.compile(r"FreeSWITCH \(Version ([^)]*)\) is (ready|not ready)")
_SINCE = re.compile(r"(\d+) session\(s\) since startup")
_SESSIONS = re.compile(r"(\d+) session\(s\) - peak (\d+), last 5min (\d+)")
_RATE = re.compile(r"(\d+) session\(s\) per Sec out of max (\d+), peak (\d+)")
_MAX = re.compile(r"(\d+) session\(s\) max")
_IDLE = re.compile(r"min idle cpu ([\d.]+)/([\d.]+)")
# switch_core_measure_time counts a year as 365 days.
_UNITS = (365 * 86400, 86400, 3600, 60, 1)

# A profile's state in `sofia xmlstatus`: "RUNNING (0)", "RUNNING (2) (TLS)".
_PROFILE_STATE = re.compile(r"(\w+)\s*\((\d+)\)")
# The media bug switch_ivr_record_session_event puts on a channel it records (uuid_buglist).
RECORD_BUG = "session_record"


@dataclass(frozen=True)
class Status:
    """FreeSWITCH's `status`: how long it has run and how many calls it holds and allows."""

    version: str
    ready: bool
    uptime_seconds: int | None
    sessions: int  # channels now (a bridged call is two)
    sessions_peak: int
    sessions_since_startup: int
    max_sessions: int | None
    sessions_per_second_max: int | None
    idle_cpu: float | None  # percent, as FreeSWITCH measures it


@dataclass(frozen=True)
class Channel:
    """One channel (one leg of a call) from `show channels as json`."""

    uuid: str
    direction: str  # "inbound" (OpenSIPS -> FreeSWITCH) or "outbound" (the B leg)
    name: str  # "sofia/smartswitch/4930123456@127.0.0.1:5060"
    state: str  # "CS_EXECUTE", "CS_EXCHANGE_MEDIA", ...
    call_state: str  # "RINGING", "EARLY", "ACTIVE", "HANGUP", ...
    caller: str
    destination: str
    created_at: datetime | None
    read_codec: str = ""
    write_codec: str = ""
    application: str = ""
    call_uuid: str = ""  # the other leg's uuid when bridged
    secure: str = ""
    values: dict[str, str] = field(default_factory=dict)  # every column as FreeSWITCH sent it

    @property
    def answered(self) -> bool:
        return self.call_state == "ACTIVE"


@dataclass(frozen=True)
class ChannelPage:
    """Some of the channels FreeSWITCH holds (`total` of them), oldest first."""

    total: int
    channels: list[Channel]

    @property
    def more(self) -> bool:
        return self.total > len(self.channels)


@dataclass(frozen=True)
class SofiaEntry:
    """A line of `sofia xmlstatus`: a SIP profile, an alias or a gateway."""

    name: str
    type: str  # "profile", "alias" or "gateway"
    data: str  # the profile's SIP URL, the alias's profile, the gateway's registrar
    state: str  # "RUNNING", "ALIASED", or a gateway's REGED/NOREG/FAILED/...
    calls: int | None = None  # a profile's channels in use
    transport: str = ""  # "", "TLS", "WS" or "WSS" for a profile's extra listeners

    @property
    def running(self) -> bool:
        return self.state in ("RUNNING", "REGED", "NOREG")


@dataclass(frozen=True)
class SofiaProfile:
    """`sofia xmlstatus profile <name>`: where a profile listens and what it offers."""

    name: str
    sip_ip: str
    url: str
    bind_url: str
    rtp_ip: tuple[str, ...]
    context: str
    dialplan: str
    inbound_codecs: str
    outbound_codecs: str
    info: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SofiaGateway:
    """`sofia xmlstatus gateway`: one outbound gateway and whether it answers."""

    name: str
    profile: str
    state: str  # registration: REGED, NOREG, FAILED, TRYING, ...
    status: str  # "UP" or "DOWN" (OPTIONS pings)
    ping_time: float | None
    calls_in: int | None
    calls_out: int | None
    failed_calls_in: int | None
    failed_calls_out: int | None
    info: dict[str, str] = field(default_factory=dict)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_status(text: str) -> Status:
    """Read the reply of `status`."""
    version = _VERSION.search(text)
    if version is None:
        raise ValueError(f"not a FreeSWITCH status reply: {text[:100]!r}")
    uptime = _UPTIME.search(text)
    seconds = None
    if uptime:
        parts = [int(part) for part in uptime.groups()]
        seconds = sum(value * unit for value, unit in zip(parts[:5], _UNITS, strict=True))
    sessions = _SESSIONS.search(text)
    since = _SINCE.search(text)
    rate = _RATE.search(text)
    maximum = _MAX.search(text)
    idle = _IDLE.search(text)
    return Status(
        version=version.group(1),
        ready=version.group(2) == "ready",
        uptime_seconds=seconds,
        sessions=int(sessions.group(1)) if sessions else 0,
        sessions_peak=int(sessions.group(2)) if sessions else 0,
        sessions_since_startup=int(since.group(1)) if since else 0,
        max_sessions=int(maximum.group(1)) if maximum else None,
        sessions_per_second_max=int(rate.group(2)) if rate else None,
        idle_cpu=float(idle.group(2)) if idle else None,
    )


def _epoch(value: Any) -> datetime | None:
    seconds = _int(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def read_channel(row: dict[str, Any]) -> Channel:
    """Read one row of `show channels as json` (the core database's channels table)."""
    values = {str(key): "" if value is None else str(value) for key, value in row.items()}
    return Channel(
        uuid=values.get("uuid", ""),
        direction=values.get("direction", ""),
        name=values.get("name", ""),
        state=values.get("state", ""),
        call_state=values.get("callstate", ""),
        caller=values.get("cid_num", ""),
        destination=values.get("dest", ""),
        created_at=_epoch(values.get("created_epoch")),
        read_codec=values.get("read_codec", ""),
        write_codec=values.get("write_codec", ""),
        application=values.get("application", ""),
        call_uuid=values.get("call_uuid", ""),
        secure=values.get("secure", ""),
        values=values,
    )


def read_channels(text: str) -> tuple[int, list[Channel]]:
    """Read `show channels as json`: the number of channels and the channels, oldest first.

    With no channel FreeSWITCH writes {"row_count": 0} and no "rows" at all.
    """
    try:
        reply = json.loads(text)
    except ValueError:
        raise ValueError(f"not JSON: {text[:100]!r}") from None
    if not isinstance(reply, dict) or "row_count" not in reply:
        raise ValueError(f"not a `show ... as json` reply: {text[:100]!r}")
    rows = [read_channel(row) for row in reply.get("rows") or [] if isinstance(row, dict)]
    return int(reply["row_count"]), rows


def read_recordings(text: str) -> list[str]:
    """The files a channel is being recorded to, from `uuid_buglist <uuid>` (none if gone)."""
    if not text.strip():
        return []  # uuid_buglist writes nothing for a channel it cannot find
    root = _xml(text)
    return [
        (bug.findtext("target") or "").strip()
        for bug in root.iter("media-bug")
        if (bug.findtext("function") or "").strip() == RECORD_BUG
    ]


def _xml(text: str) -> ElementTree.Element:
    # FreeSWITCH declares ISO-8859-1 and writes the bytes as they are: parse the text.
    body = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    try:
        # Our own engine's reply, on the management network; expat expands no external entity.
        return ElementTree.fromstring(body.strip())  # noqa: S314
    except ElementTree.ParseError as exc:
        raise ValueError(f"not XML ({exc}): {text[:100]!r}") from None


def _children(element: ElementTree.Element) -> dict[str, str]:
    return {child.tag: (child.text or "").strip() for child in element}


def read_sofia_status(text: str) -> list[SofiaEntry]:
    """Read `sofia xmlstatus`: every running profile, alias and gateway."""
    root = _xml(text)
    entries = []
    for element in root:
        values = _children(element)
        state, calls, transport = values.get("state", ""), None, ""
        match = _PROFILE_STATE.match(state)
        if element.tag == "profile" and match:
            state, calls = match.group(1), int(match.group(2))
            transport = values["state"][match.end() :].strip(" ()")  # "(TLS)" after the count
        entries.append(
            SofiaEntry(
                name=values.get("name", ""),
                type=values.get("type", element.tag),
                data=values.get("data", ""),
                state=state,
                calls=calls,
                transport=transport,
            )
        )
    return entries


def read_sofia_profile(text: str) -> SofiaProfile | None:
    """Read `sofia xmlstatus profile <name>`; None for "Invalid Profile!"."""
    if not text.lstrip().startswith("<"):
        return None
    root = _xml(text)
    info_element = root.find("profile-info")
    if info_element is None:
        raise ValueError(f"no profile-info in {text[:100]!r}")
    info = _children(info_element)
    return SofiaProfile(
        name=info.get("name", ""),
        sip_ip=info.get("sip-ip", ""),
        url=info.get("url", ""),
        bind_url=info.get("bind-url", ""),
        rtp_ip=tuple((item.text or "").strip() for item in info_element.findall("rtp-ip")),
        context=info.get("context", ""),
        dialplan=info.get("dialplan", ""),
        inbound_codecs=info.get("inbound-codecs", ""),
        outbound_codecs=info.get("outbound-codecs", ""),
        info=info,
    )


def read_sofia_gateways(text: str) -> list[SofiaGateway]:
    """Read `sofia xmlstatus gateway`: every gateway of every running profile."""
    root = _xml(text)
    gateways = []
    for element in root.iter("gateway"):
        values = _children(element)
        gateways.append(
            SofiaGateway(
                name=values.get("name", ""),
                profile=values.get("profile", ""),
                state=values.get("state", ""),
                status=values.get("status", ""),
                ping_time=_float(values.get("pingtime")),
                calls_in=_int(values.get("calls-in")),
                calls_out=_int(values.get("calls-out")),
                failed_calls_in=_int(values.get("failed-calls-in")),
                failed_calls_out=_int(values.get("failed-calls-out")),
                info=values,
            )
        )
    return gateways
