"""Just enough SIP parsing to group, end and label captured messages. Pure, never raises."""

import re
from dataclasses import dataclass

# Compact header forms (RFC 3261 7.3.3) that matter here.
COMPACT = {"i": "call-id", "v": "via"}
# The B leg through FreeSWITCH carries its A leg's Call-ID here when the dialplan sets it
# (docs/CAPTURE.md): the message itself then says which call it belongs to.
LINK_HEADER = "x-ss-call-id"
_STATUS = re.compile(r"^SIP/2\.0\s+(\d{3})\s*(.*)$")
_BRANCH = re.compile(r";\s*branch=([^;,\s]+)", re.IGNORECASE)
_REQUEST = re.compile(r"^([A-Z]+)\s+(\S+)\s+SIP/2\.0$")


@dataclass(frozen=True)
class SipSummary:
    """What one SIP message is: a request's method or a response's code, and its CSeq."""

    call_id: str
    method: str  # a request's method, or the CSeq method a response answers
    status: int  # 0 for a request
    reason: str
    cseq_method: str
    link: str  # another Call-ID this message says it belongs with, or ""
    cseq: int = 0
    branch: str = ""  # the top Via's branch: a response carries its request's

    @property
    def is_request(self) -> bool:
        return self.status == 0

    @property
    def label(self) -> str:
        """The ladder's arrow text: "INVITE" or "200 OK (INVITE)"."""
        if self.is_request:
            return self.method
        return f"{self.status} {self.reason}".strip() + f" ({self.cseq_method})"

    @property
    def ends_call(self) -> bool:
        """A final non-2xx to INVITE (the call failed) or a 2xx to BYE (it was hung up)."""
        if self.cseq_method == "INVITE":
            return self.status >= 300
        return self.cseq_method == "BYE" and 200 <= self.status < 300


def summarize(payload: bytes) -> SipSummary | None:
    """The summary of a SIP message, or None when `payload` is not one (e.g. a keepalive)."""
    head = payload.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.replace("\r\n", "\n").split("\n")
    first = lines[0].strip()
    headers = _headers(lines[1:])
    cseq = headers.get("cseq", "").split()
    cseq_method = cseq[1].upper() if len(cseq) > 1 else ""
    number = int(cseq[0]) if cseq and cseq[0].isdigit() else 0
    branch = _branch(headers.get("via", ""))
    call_id = headers.get("call-id", "")
    if match := _STATUS.match(first):
        status, reason, method = int(match[1]), match[2].strip(), cseq_method
    elif match := _REQUEST.match(first):
        status, reason, method = 0, "", match[1]
    else:
        return None
    return SipSummary(call_id, method, status, reason, cseq_method or method, _link(headers), number, branch)


def _headers(lines: list[str]) -> dict[str, str]:
    """{lower-case name: first value}, continuation lines folded; first occurrence wins."""
    found: dict[str, str] = {}
    name = None
    for line in lines:
        if line[:1] in (" ", "\t") and name:
            found[name] = f"{found[name]} {line.strip()}" if found.get(name) else line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            name = None
            continue
        name = key.strip().lower()
        name = COMPACT.get(name, name)
        found.setdefault(name, value.strip())
    return found


def _link(headers: dict[str, str]) -> str:
    return headers.get(LINK_HEADER, "")


def _branch(via: str) -> str:
    """The branch of the first Via value (a header may list several, comma-separated)."""
    match = _BRANCH.search(via.split(",", 1)[0])
    return match[1] if match else ""
