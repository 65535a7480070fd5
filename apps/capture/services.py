"""The write paths of call capture: its settings, and a finished call's pcap file."""

import re
from datetime import UTC, datetime
from pathlib import Path

from apps.capture import pcap
from apps.capture.collector import FinishedCall, in_causal_order
from apps.capture.models import CaptureSettings
from apps.core.changes import announce
from apps.core.db import retry_on_conflict
from apps.core.services import apply_changes, ensure_manages, save_object
from apps.files import services as files
from apps.files.models import StoredFile
from apps.nodes.models import Node
from apps.tenancy.scope import Scope

CAPTURE_SETTINGS = ("sample_percent",)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # what apps.files takes in a path segment


@retry_on_conflict
def update_capture_settings(*, actor: Scope, changes: dict) -> CaptureSettings:
    """Change the sampled share of captured calls (operator only)."""
    ensure_manages(actor, None)
    current = CaptureSettings.load()
    apply_changes(current, changes, allowed=CAPTURE_SETTINGS)
    current = save_object(current, actor=actor, action="capture.settings_changed")
    # Call control decides per call from its snapshot: it must hear of the new share.
    announce("capture.CaptureSettings", [current.pk], fields=changes)
    return current


def file_name(call: FinishedCall) -> str:
    """`<call-id>-<first message time>.pcap`, safe as a file name and unique per call part."""
    safe = _UNSAFE.sub("_", call.call_id).strip("._")[:120] or "call"
    return f"{safe}-{call.first_timestamp_us}.pcap"


def write_pcap(call: FinishedCall, origin: Node) -> str:
    """Write `call` as a pcap below this node's captures directory; returns its relative path.

    Written to a temporary name and renamed, so the file sync never sees half a file.
    """
    when = datetime.fromtimestamp(call.first_timestamp_us / 1_000_000, tz=UTC)
    relative = files.path_for(origin, file_name(call), when=when)
    path = files.kind_root(StoredFile.Kind.CAPTURE) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    with open(partial, "wb") as out:
        pcap.write(out, (_message(packet) for packet in in_causal_order(call.messages)))
    Path(partial).replace(path)
    return relative


def save_capture(call: FinishedCall, origin: Node) -> StoredFile:
    """Write `call`'s pcap and register it with the file sync (copied to every node)."""
    relative = write_pcap(call, origin)
    return files.register_file(
        kind=StoredFile.Kind.CAPTURE, relative_path=relative, origin=origin, call_id=call.call_id[:255]
    )


def _message(packet) -> pcap.Message:
    return pcap.Message(
        packet.timestamp_us, packet.src_ip, packet.src_port, packet.dst_ip, packet.dst_port, packet.payload
    )
