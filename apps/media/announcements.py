"""Announcements: the one write path, the map call control loads, and the files on each node.

Uploaded in the admin (operator only), kept in the database, written by every node into its
announcements directory (`write_announcements`: at once after a change, on every node's
task queue; again by `manage.py write_announcements` before FreeSWITCH starts and by a
periodic sweep, so a node that was away catches up). Call control picks the file for a
refusal from `announcement_map()` and sends it to FreeSWITCH in X-SS-Announce.
"""

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from apps.audit import services as audit
from apps.cluster.topology import try_send_to_node
from apps.core import changes
from apps.core.errors import Conflict
from apps.core.services import save_object
from apps.media.config import announcements_dir
from apps.media.models import Announcement, AnnouncementRule, RefusalKind, announcement_file_name
from apps.nodes.models import Node
from apps.peers.models import Peer
from apps.tenancy.scope import Scope

logger = logging.getLogger(__name__)

WRITE_TASK = "apps.media.announcements.write_announcements"
# Files this module wrote (announcement_file_name): the only ones it ever deletes.
OUR_FILE = re.compile(r"^[a-z0-9_-]+-[0-9a-f]{12}\.wav$")

# Call control's rejections (apps.callcontrol.decision: `reject(code, reason, step)`) by
# (step, code). Steps before the caller is known (identify, node) play nothing: an
# unknown caller hears no more than a SIP code.
REFUSALS = {
    ("money", 402): RefusalKind.INSUFFICIENT_FUNDS,
    ("money", 486): RefusalKind.TOO_MANY_CALLS,
    ("routing", 503): RefusalKind.NO_ROUTE,
    ("routes", 503): RefusalKind.NO_ROUTE,
    ("sell rate", 404): RefusalKind.NO_ROUTE,
    ("routing", 403): RefusalKind.BLOCKED,
    ("blocklists", 403): RefusalKind.BLOCKED,
    ("status", 403): RefusalKind.SUSPENDED,
    ("DID", 404): RefusalKind.NOT_IN_SERVICE,
    ("on-net", 404): RefusalKind.NOT_IN_SERVICE,
    ("DID", 480): RefusalKind.UNAVAILABLE,
    ("on-net", 480): RefusalKind.UNAVAILABLE,
}


# --- what call control reads --------------------------------------------------------------


def refusal_kind(step: str, code: int) -> str | None:
    """The announcement kind of a call-control rejection (its failing step and SIP code)."""
    return REFUSALS.get((step, code))


def announcement_map() -> dict[tuple[int | None, str], str]:
    """{(peer id or None for everyone, refusal kind): file name in the announcements directory}.

    "" for a peer means "none for this peer" (it silences the cluster-wide one). One query,
    no audio: cheap enough for call control's snapshot (which reloads on the change
    announced for media.Announcement and media.AnnouncementRule).
    """
    rows = AnnouncementRule.objects.order_by("pk").values_list(
        "peer_id", "kind", "announcement__name", "announcement__sha256"
    )
    return {
        (peer_id, kind): announcement_file_name(name, sha256) if name is not None else ""
        for peer_id, kind, name, sha256 in rows
    }


def announcement_for(mapping: dict, peer_id: int | None, kind: str | None) -> str | None:
    """The file a refusal of `kind` plays to `peer_id`, from `announcement_map()`; None = none."""
    if kind is None:
        return None
    name = mapping.get((peer_id, kind)) if peer_id is not None else None
    if name is None:
        name = mapping.get((None, kind))
    return name or None


# --- the write path ---------------------------------------------------------------------


@transaction.atomic
def create_announcement(*, name: str, audio: bytes, actor: Scope) -> Announcement:
    """Add an announcement from an uploaded WAV file (ValidationError if it cannot be played)."""
    announcement = Announcement(name=name)
    announcement.set_audio(audio)
    save_object(announcement, actor=actor, action="announcement.created")
    _announced(announcement)
    return announcement


@transaction.atomic
def update_announcement(
    announcement: Announcement, *, actor: Scope, name: str | None = None, audio: bytes | None = None
) -> Announcement:
    """Rename an announcement or replace its audio; nodes write the new file, drop the old."""
    if name is not None:
        announcement.name = name
    if audio is not None:
        announcement.set_audio(audio)
    save_object(announcement, actor=actor, action="announcement.changed")
    _announced(announcement)
    return announcement


@transaction.atomic
def delete_announcement(announcement: Announcement, *, actor: Scope) -> None:
    """Delete an announcement no rule plays."""
    if announcement.rules.exists():
        raise Conflict(
            f"{announcement} is played by {announcement.rules.count()} rule(s): change them first."
        )
    audit.record(actor, "announcement.deleted", announcement)
    pk = announcement.pk
    announcement.delete()
    changes.announce("media.Announcement", [pk])
    _write_on_every_node()


def set_rule(
    kind: str, announcement: Announcement | None, *, peer: Peer | None = None, actor: Scope
) -> AnnouncementRule:
    """Make refusals of `kind` (to `peer`, or to everyone) play `announcement` (None: nothing)."""
    rule = AnnouncementRule.objects.filter(kind=kind, peer=peer).first() or AnnouncementRule(
        kind=kind, peer=peer
    )
    rule.announcement = announcement
    return save_rule(rule, actor=actor)


@transaction.atomic
def save_rule(rule: AnnouncementRule, *, actor: Scope) -> AnnouncementRule:
    """Save a rule as filled in (validated by its clean(): one per refusal kind and peer)."""
    save_object(rule, actor=actor, action="announcement_rule.set")
    changes.announce("media.AnnouncementRule", [rule.pk])
    return rule


@transaction.atomic
def delete_rule(rule: AnnouncementRule, *, actor: Scope) -> None:
    """Stop a refusal of the rule's kind playing its announcement (to its peer, or to everyone)."""
    audit.record(actor, "announcement_rule.deleted", rule)
    pk = rule.pk
    rule.delete()
    changes.announce("media.AnnouncementRule", [pk])


def _announced(announcement: Announcement) -> None:
    changes.announce("media.Announcement", [announcement.pk])
    _write_on_every_node()


def _write_on_every_node() -> None:
    names = list(Node.objects.enabled().values_list("name", flat=True))

    def send():
        # A node whose queue cannot be reached catches up at its next sweep or start.
        for name in names:
            try_send_to_node(name, WRITE_TASK)

    transaction.on_commit(send)


# --- the files on this node --------------------------------------------------------------


@dataclass(frozen=True)
class WriteResult:
    written: tuple[str, ...]
    removed: tuple[str, ...]
    kept: int


def write_announcements(directory: Path | None = None) -> WriteResult:
    """Make this node's announcements directory hold exactly the announcements' files.

    Idempotent: a file already there (its name carries its content's hash) is not read
    again. New files are written beside their final name and renamed, so FreeSWITCH never
    plays half a file. Files of announcements no longer in the database are removed; other
    files in the directory are left alone.
    """
    directory = Path(directory or announcements_dir())
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {
        announcement_file_name(name, sha256): pk
        for pk, name, sha256 in Announcement.objects.values_list("pk", "name", "sha256")
    }
    present = {path.name for path in directory.iterdir() if path.is_file()}
    written = []
    for file_name in sorted(wanted.keys() - present):
        audio = Announcement.objects.filter(pk=wanted[file_name]).values_list("audio", flat=True).first()
        if audio is None:
            continue  # deleted meanwhile
        _write_atomically(directory / file_name, bytes(audio))
        written.append(file_name)
    removed = []
    for file_name in sorted(present - wanted.keys()):
        if OUR_FILE.match(file_name):
            (directory / file_name).unlink(missing_ok=True)
            removed.append(file_name)
    if written or removed:
        logger.info("announcements in %s: wrote %s, removed %s", directory, written, removed)
    return WriteResult(tuple(written), tuple(removed), kept=len(wanted) - len(written))


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
