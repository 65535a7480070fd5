"""Grouping captured SIP messages into calls and deciding when a call is over. Pure: the
clock is passed in, nothing is written here (apps.capture.listener writes).

A call is every message of its SIP dialogs. One dialog is one Call-ID; OpenSIPS is a proxy,
so a signalling-only call is one Call-ID on both sides of it. A call through FreeSWITCH has
a second dialog (the B leg, FreeSWITCH → OpenSIPS → supplier) with its own Call-ID; it is
joined to the A leg when a message names the A leg's Call-ID either as its HEP correlation
id (OpenSIPS's trace() with the correlation_id argument) or in an X-SS-Call-ID header
(docs/CAPTURE.md). Every Call-ID and correlation id seen becomes an alias of its call; a
message that links two calls already held merges them into the older one, whose first
Call-ID (the customer's, the CDR's call_id) names the file.

A dialog is over after a final non-2xx answer to its initial INVITE sent back to whoever sent the
INVITE (a failed branch's 503 to OpenSIPS while it hunts on is not the end), or a 2xx to
a BYE. A call is over when all its dialogs are, plus a linger for the last ACKs and
retransmissions; a call silent for the idle bound is written as it is (a later BYE then
starts a second file for the same Call-ID, and the ladder reads both).

Memory is bounded: at most `max_calls` calls (the least recently active is written early
when one more arrives) and `max_messages` per call (the rest are counted, not kept).
"""

from collections import OrderedDict
from dataclasses import dataclass, field, replace

from apps.capture.hep import HepPacket
from apps.capture.sip import SipSummary, summarize

# The same message seen by two agents (OpenSIPS sending it, FreeSWITCH receiving it) is
# kept once if the second copy comes within this many microseconds; an agent's own
# retransmissions are kept, they are part of what happened.
DUPLICATE_WINDOW_US = 2_000_000


@dataclass
class Call:
    """The messages of one call held until it is over."""

    call_id: str
    started: float  # the collector's clock when its first message came
    last_seen: float
    messages: list[HepPacket] = field(default_factory=list)
    aliases: set[str] = field(default_factory=set)
    # Call-ID -> (ip, port, CSeq) of its initial INVITE; Call-IDs whose dialog is over.
    callers: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    over_since: float | None = None
    traced: bool = False  # a message came with a correlation id (OpenSIPS's trace())
    dropped: int = 0
    _seen: dict[tuple, tuple[int, int]] = field(default_factory=dict)

    @property
    def is_over(self) -> bool:
        return bool(self.callers) and self.callers.keys() <= self.ended


@dataclass(frozen=True)
class FinishedCall:
    """A call to write: its name, its messages in time order, why it was let go."""

    call_id: str
    messages: list[HepPacket]
    reason: str  # "ended", "idle", "evicted", "shutdown"
    dropped: int = 0

    @property
    def first_timestamp_us(self) -> int:
        return self.messages[0].timestamp_us if self.messages else 0


class Collector:
    """Calls being captured on this node, keyed by every id they are known under."""

    def __init__(
        self,
        *,
        linger: float = 3.0,
        idle: float = 7200.0,
        max_calls: int = 5000,
        max_messages: int = 500,
        only_traced: bool = False,
    ) -> None:
        self.linger = linger
        self.idle = idle
        self.max_calls = max_calls
        self.max_messages = max_messages
        # FreeSWITCH's sofia captures every call of its profile, OpenSIPS only those call
        # control chose (trace()), and only OpenSIPS's tracer sends a correlation chunk: a
        # call none of whose messages has one was not chosen and is let go unwritten.
        self.only_traced = only_traced
        self._calls: OrderedDict[int, Call] = OrderedDict()  # by id(), least recently active first
        self._by_alias: dict[str, Call] = {}
        self.ignored = 0  # not SIP, or no Call-ID

    def __len__(self) -> int:
        return len(self._calls)

    def add(self, packet: HepPacket, *, now: float) -> list[FinishedCall]:
        """Take one captured message; returns calls evicted to make room (usually none)."""
        summary = summarize(packet.payload) if packet.is_sip else None
        if summary is None or not summary.call_id:
            self.ignored += 1
            return []
        ids = [i for i in (packet.correlation_id, summary.link, summary.call_id) if i]
        call, evicted = self._call_for(ids, now)
        call.last_seen = now
        call.traced = call.traced or bool(packet.correlation_id)
        self._calls.move_to_end(id(call))
        self._keep(call, packet)
        self._follow(call, packet, summary, now)
        return evicted

    def due(self, *, now: float) -> list[FinishedCall]:
        """Calls over for longer than the linger, or silent past the idle bound; forgotten here."""
        finished = []
        for call in list(self._calls.values()):
            if call.over_since is not None and now - call.over_since >= self.linger:
                finished.append(self._release(call, "ended"))
            elif now - call.last_seen >= self.idle:
                finished.append(self._release(call, "idle"))
        return finished

    def drain(self) -> list[FinishedCall]:
        """Every call held, as it is (on shutdown)."""
        return [self._release(call, "shutdown") for call in list(self._calls.values())]

    # --- internals -----------------------------------------------------------------------

    def _call_for(self, ids: list[str], now: float) -> tuple[Call, list[FinishedCall]]:
        known = []
        for alias in ids:
            call = self._by_alias.get(alias)
            if call is not None and all(call is not other for other in known):
                known.append(call)
        evicted = []
        if not known:
            if len(self._calls) >= self.max_calls:
                oldest = next(iter(self._calls.values()))
                evicted.append(self._release(oldest, "evicted"))
            # The name is the first id: the correlation id (the A leg's Call-ID) when the
            # message has one, else its own Call-ID.
            call = Call(call_id=ids[0], started=now, last_seen=now)
            self._calls[id(call)] = call
        else:
            call = min(known, key=lambda held: held.started)
            for other in known:
                if other is not call:
                    self._merge(call, other)
        for alias in ids:
            call.aliases.add(alias)
            self._by_alias[alias] = call
        return call, evicted

    def _merge(self, into: Call, other: Call) -> None:
        into.messages = sorted(into.messages + other.messages, key=lambda m: m.timestamp_us)
        extra = len(into.messages) - self.max_messages
        if extra > 0:
            into.messages = into.messages[: self.max_messages]
        into.dropped += other.dropped + max(extra, 0)
        for call_id, caller in other.callers.items():
            into.callers.setdefault(call_id, caller)
        into.ended |= other.ended
        into.traced = into.traced or other.traced
        into._seen.update(other._seen)
        into.over_since = None
        for alias in other.aliases:
            into.aliases.add(alias)
            self._by_alias[alias] = into
        del self._calls[id(other)]

    def _keep(self, call: Call, packet: HepPacket) -> None:
        fingerprint = (packet.src_ip, packet.src_port, packet.dst_ip, packet.dst_port, packet.payload)
        first = call._seen.get(fingerprint)
        if (
            first is not None
            and first[0] != packet.capture_id
            and abs(packet.timestamp_us - first[1]) <= DUPLICATE_WINDOW_US
        ):
            return  # the other end's copy of a message already kept
        if len(call.messages) >= self.max_messages:
            call.dropped += 1
            return
        call._seen.setdefault(fingerprint, (packet.capture_id, packet.timestamp_us))
        call.messages.append(packet)

    def _follow(self, call: Call, packet: HepPacket, summary: SipSummary, now: float) -> None:
        dialog = summary.call_id
        if summary.is_request and summary.method == "INVITE":
            call.callers.setdefault(dialog, (packet.src_ip, packet.src_port, summary.cseq))
        elif not summary.is_request and summary.ends_call and dialog in call.callers:
            # The initial INVITE's answer (not a re-INVITE's 491), sent back to its sender.
            to_caller = (packet.dst_ip, packet.dst_port, summary.cseq) == call.callers[dialog]
            if summary.cseq_method == "BYE" or to_caller:
                call.ended.add(dialog)
        if call.is_over:
            if call.over_since is None:
                call.over_since = now
        else:
            call.over_since = None

    def _release(self, call: Call, reason: str) -> FinishedCall:
        self._calls.pop(id(call), None)
        for alias in call.aliases:
            if self._by_alias.get(alias) is call:
                del self._by_alias[alias]
        if self.only_traced and not call.traced:
            return FinishedCall(call.call_id, [], "not traced", call.dropped)
        messages = sorted(call.messages, key=lambda m: m.timestamp_us)
        return FinishedCall(call.call_id, messages, reason, call.dropped)


def in_causal_order(packets: list[HepPacket]) -> list[HepPacket]:
    """`packets` by time, each request before the replies to it.

    OpenSIPS stamps a request it relays when the tracer's transaction callback runs, which
    can be after the next hop's reply has come in (seen: the relayed INVITE 0.1 ms after
    its 180). A request found after a reply to it (same top-Via branch and CSeq, opposite
    direction) is moved before that reply and stamped 1 us earlier, so the pcap, tshark
    and the ladder agree on an order that could have happened.
    """
    ordered = sorted(packets, key=lambda p: p.timestamp_us)
    summaries = [summarize(p.payload) if p.is_sip else None for p in ordered]
    index = 0
    while index < len(ordered):
        reply = summaries[index]
        if reply is not None and not reply.is_request and reply.branch:
            later = _request_after(ordered, summaries, index)
            if later is not None:
                stamp = ordered[index].timestamp_us - 1
                if index:
                    stamp = max(stamp, ordered[index - 1].timestamp_us)
                ordered.insert(index, replace(ordered.pop(later), timestamp_us=stamp))
                summaries.insert(index, summaries.pop(later))
                index += 1
        index += 1
    return ordered


def _request_after(ordered: list[HepPacket], summaries: list, index: int) -> int | None:
    reply, packet = summaries[index], ordered[index]
    for later in range(index + 1, len(ordered)):
        request, candidate = summaries[later], ordered[later]
        if (
            request is not None
            and request.is_request
            and (request.branch, request.cseq, request.cseq_method)
            == (reply.branch, reply.cseq, reply.cseq_method)
            and (candidate.src_ip, candidate.src_port) == (packet.dst_ip, packet.dst_port)
            and (candidate.dst_ip, candidate.dst_port) == (packet.src_ip, packet.src_port)
        ):
            return later
    return None
