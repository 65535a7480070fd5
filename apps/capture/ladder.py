"""A call's SIP ladder from its pcap files: hosts as columns, messages as arrows. Pure.

Also what a tenant may see of a call: `own_leg` keeps the messages between the customer
and the switch, the only ones that crossed the customer's own wire.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from apps.capture.pcap import Message
from apps.capture.sip import summarize

# Drawing geometry (px), shared by the template through Ladder.
COLUMN = 210
MARGIN = 130
ROW = 34
TOP = 56


@dataclass(frozen=True)
class Host:
    address: str  # "ip:port"
    name: str  # what the address is, when we know (a node's OpenSIPS, the customer), else ""
    x: int


@dataclass(frozen=True)
class Arrow:
    number: int
    at: datetime
    offset_ms: int  # since the first message
    src: Host
    dst: Host
    label: str
    kind: str  # request, provisional, success, failure
    text: str  # the whole message
    y: int

    @property
    def x1(self) -> int:
        return self.src.x

    @property
    def x2(self) -> int:
        # Stop short of the column so the arrowhead does not cover it.
        return self.dst.x + (-6 if self.dst.x > self.src.x else 6)

    @property
    def label_x(self) -> int:
        return (self.src.x + self.dst.x) // 2

    @property
    def is_loop(self) -> bool:
        return self.src is self.dst


@dataclass(frozen=True)
class Ladder:
    hosts: list[Host]
    arrows: list[Arrow]

    @property
    def width(self) -> int:
        return MARGIN + COLUMN * max(len(self.hosts), 1)

    @property
    def height(self) -> int:
        return TOP + ROW * (len(self.arrows) + 1)

    @property
    def top(self) -> int:
        return TOP - 26


def endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def build(messages: list[Message], names: dict[str, str] | None = None) -> Ladder:
    """The ladder of `messages` (sorted by time here); `names` labels known "ip:port" or "ip" hosts."""
    names = names or {}
    ordered = sorted(messages, key=lambda m: m.timestamp_us)
    hosts: dict[str, Host] = {}

    def host(address: str) -> Host:
        if address not in hosts:
            name = names.get(address) or names.get(address.rpartition(":")[0].strip("[]"), "")
            hosts[address] = Host(address, name, MARGIN + COLUMN * len(hosts) + COLUMN // 2)
        return hosts[address]

    arrows = []
    start = ordered[0].timestamp_us if ordered else 0
    for number, message in enumerate(ordered, 1):
        src = host(endpoint(message.src_ip, message.src_port))
        dst = host(endpoint(message.dst_ip, message.dst_port))
        summary = summarize(message.payload)
        arrows.append(
            Arrow(
                number=number,
                at=datetime.fromtimestamp(message.timestamp_us / 1_000_000, tz=UTC),
                offset_ms=(message.timestamp_us - start) // 1000,
                src=src,
                dst=dst,
                label=summary.label if summary else "(not SIP)",
                kind=_kind(summary.status if summary else 0),
                text=message.payload.decode("utf-8", "replace"),
                y=TOP + ROW * number,
            )
        )
    return Ladder(list(hosts.values()), arrows)


def _kind(status: int) -> str:
    if status == 0:
        return "request"
    if status < 200:
        return "provisional"
    return "success" if status < 300 else "failure"


def own_leg(messages: list[Message], call_id: str, source_ip: str | None) -> list[Message]:
    """The messages between the customer and the switch in call `call_id`.

    The customer's end is where the call's first INVITE of that Call-ID came from (from
    `source_ip`, the CDR's, when known); kept are that dialog's messages to or from it.
    What the switch sent on to FreeSWITCH or a supplier stays out, even where OpenSIPS,
    a proxy, kept the same Call-ID on the supplier's side.
    """
    ordered = sorted(messages, key=lambda m: m.timestamp_us)
    summaries = [(message, summarize(message.payload)) for message in ordered]
    ours = [(m, s) for m, s in summaries if s is not None and s.call_id == call_id]
    invites = [m for m, s in ours if s.is_request and s.method == "INVITE"]
    first = next((m for m in invites if m.src_ip == source_ip), None) if source_ip else None
    first = first or (invites[0] if invites and not source_ip else None)
    if first is None:
        return []
    customer = (first.src_ip, first.src_port)
    return [m for m, _ in ours if customer in ((m.src_ip, m.src_port), (m.dst_ip, m.dst_port))]


# Arrowhead colour per arrow kind (the template draws one marker each).
MARKERS = (("request", "#1f5fa8"), ("provisional", "#888"), ("success", "#2b7a2b"), ("failure", "#b02a2a"))
