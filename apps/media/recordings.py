"""Call recordings: registered when FreeSWITCH closes one, found again from their CDR.

FreeSWITCH writes a recording below `RECORDINGS_DIR/<node>/` (the path call control put in
X-SS-Record) and says so with RECORD_STOP; the node's ESL listener calls
`register_recording`, which hands the file to apps.files so every node gets a copy.

A RECORD_STOP can be missed (the listener was reconnecting after a FreeSWITCH restart):
`register_missed` finds the finished recordings of the last days that nobody registered,
every few minutes on each node (apps.media.tasks), so no recording is left uncopied.

An empty file is registered like any other: it says the call was meant to be recorded and
nothing was (FreeSWITCH opened the file, no audio came), the CDR page says so instead of
offering a player, and retention removes it in its time. Refusing it would leave a file
on disk that nothing ever deletes.
"""

import logging
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Exists, QuerySet
from django.http import HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.billing.models import Reservation
from apps.core.errors import DomainError
from apps.files import services as files
from apps.files.models import FileCopy, StoredFile
from apps.files.serving import serve_file
from apps.nodes.models import Node

logger = logging.getLogger(__name__)

# A WAV file with nothing after its header: the call recorded no audio.
WAV_HEADER_BYTES = 44
CONTENT_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/ogg"}


class RecordingRefused(DomainError):
    """A RECORD_STOP names a file this node must not register."""


def register_recording(node: Node, *, call_id: str, path: str | Path) -> StoredFile:
    """Register the finished recording at `path` of the call `call_id`, made on `node`.

    `path` must lie below RECORDINGS_DIR/<node name>/ (a relative one is read from
    RECORDINGS_DIR); anything else is refused, symbolic links and `..` included, since a
    registered file is copied to every node and served to the call's customer. A second
    RECORD_STOP for the same file returns the row of the first and reads nothing.
    """
    relative = recording_relative_path(node, path)
    existing = StoredFile.objects.filter(kind=StoredFile.Kind.RECORDING, relative_path=relative).first()
    if existing is not None:
        return existing
    stored = files.register_file(
        kind=StoredFile.Kind.RECORDING, relative_path=relative, origin=node, call_id=call_id[:255]
    )
    if stored.size == 0:
        logger.warning("recording %s of call %s is empty", relative, call_id)
    return stored


# A recording is finished when FreeSWITCH has not written to it for this long; the sweep
# looks this many days back (the directories of those days only).
SETTLED = timedelta(minutes=1)
SWEEP_DAYS = 2
# Call control names a recording "<Call-ID, made safe>-<reservation id>.wav".
RESERVATION_IN_NAME = re.compile(r"-(\d+)\.wav$")


def register_missed(node: Node, *, now: datetime | None = None) -> list[StoredFile]:
    """Register `node`'s finished recordings of the last SWEEP_DAYS days that no RECORD_STOP
    registered; each as made when it was last written (so its CDR finds it), its Call-ID
    from the reservation its name carries."""
    now = now or timezone.now()
    root = Path(settings.RECORDINGS_DIR)
    days = {f"{node.name}/{(now - timedelta(days=back)):%Y/%m/%d}" for back in range(SWEEP_DAYS)}
    found = {}
    for day in days:
        for path in sorted((root / day).glob("*.wav")):
            finished = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.get_current_timezone())
            if finished <= now - SETTLED:
                found[f"{day}/{path.name}"] = finished
    known = set(
        StoredFile.objects.filter(kind=StoredFile.Kind.RECORDING, relative_path__in=found).values_list(
            "relative_path", flat=True
        )
    )
    missed = {relative: finished for relative, finished in found.items() if relative not in known}
    reservations = {
        int(match[1]): relative for relative in missed if (match := RESERVATION_IN_NAME.search(relative))
    }
    call_ids = {
        reservations[pk]: call_id
        for pk, call_id in Reservation.objects.filter(pk__in=reservations).values_list("pk", "call_id")
    }
    registered = []
    for relative, finished in missed.items():
        stored = register_recording(node, call_id=call_ids.get(relative, ""), path=relative)
        StoredFile.objects.filter(pk=stored.pk).update(created_at=finished)
        logger.warning(
            "recording %s had not been registered (a RECORD_STOP missed): registered now", relative
        )
        registered.append(stored)
    return registered


def recording_relative_path(node: Node, path: str | Path) -> str:
    """`path` relative to RECORDINGS_DIR, checked to be a file of `node`'s tree."""
    root = Path(settings.RECORDINGS_DIR)
    # resolve() follows links and folds "..": what is checked is where the bytes are. The
    # node's directory is resolved too, so it may itself be a link to another disk.
    own = (root / node.name).resolve()
    absolute = (root / path).resolve()
    if not absolute.is_relative_to(own) or absolute == own:
        raise RecordingRefused(f"{path} is not below {root / node.name}/: not registered.", field="path")
    return f"{node.name}/{absolute.relative_to(own).as_posix()}"


# --- reading -----------------------------------------------------------------------------


def files_for_cdr(cdr) -> QuerySet[StoredFile]:
    """The recordings and captures of `cdr`, oldest first (see files.files_of_call)."""
    return files.files_of_cdr(cdr).select_related("origin").order_by("created_at", "pk")


def recordings_for_cdr(cdr) -> list[StoredFile]:
    """The recordings of `cdr`, as `with_presence` tells them."""
    return with_presence(f for f in files_for_cdr(cdr) if f.kind == StoredFile.Kind.RECORDING)


def with_presence(recordings: Iterable[StoredFile]) -> list[StoredFile]:
    """`recordings`, each told whether this node has its copy (`here`, else `absence`: why
    not) and whether it holds any audio (`is_empty`), for a page to show a player or not."""
    listed = list(recordings)
    for stored in listed:
        stored.here = local_path(stored).is_file()
        stored.absence = "" if stored.here else absence(stored)[1]
        stored.is_empty = stored.size <= WAV_HEADER_BYTES
    return listed


def capture_links(cdr, where: str) -> list[tuple[str, str]]:
    """[(label, url)] of the capture pages of `cdr` in `where` ("admin", "portal").

    apps.capture names them; until it does, or where it has no such page, there is no link.
    """
    links = []
    for view, label in (("ladder", "SIP ladder"), ("pcap", "Download pcap")):
        try:
            links.append((label, reverse(f"capture:{where}-{view}", args=[cdr.pk])))
        except NoReverseMatch:
            continue
    return links


def with_recording(cdrs: QuerySet) -> QuerySet:
    """`cdrs` annotated `has_recording`, in the same query (call lists)."""
    recordings = files.files_of_outer_cdr().filter(kind=StoredFile.Kind.RECORDING)
    return cdrs.annotate(has_recording=Exists(recordings))


def local_path(stored: StoredFile) -> Path:
    """Where this node keeps its copy of `stored`."""
    return files.kind_root(stored.kind) / stored.relative_path


def content_type(stored: StoredFile) -> str:
    return CONTENT_TYPES.get(Path(stored.relative_path).suffix.lower(), "application/octet-stream")


def serve_recording(request, stored: StoredFile, *, download: bool) -> HttpResponse:
    """Play or download `stored` from this node's copy; say why when there is none yet.

    The caller has checked the user may hear it. Any node serves it: the copy sync puts
    every recording on every node, so which node a user's browser reaches does not matter
    once the copy is there.
    """
    path = local_path(stored)
    if stored.is_deleted or not path.is_file():
        status, message = absence(stored)
        return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    return serve_file(request, path, content_type=content_type(stored), filename=path.name, download=download)


def absence(stored: StoredFile) -> tuple[int, str]:
    """(HTTP status, why) this node cannot serve `stored` now, said to whoever asked.

    No node names: reseller staff and customers read this too.
    """
    if stored.is_deleted:
        return 404, "This recording was deleted."
    here = FileCopy.objects.filter(file=stored, node__name=settings.NODE_NAME).first()
    if here is None or here.state != FileCopy.State.PRESENT:
        # 409, not 404: the recording exists and this node will have it shortly.
        return 409, ("This recording is still being copied to the server you reached; try again in a minute.")
    return 404, (
        "This server's copy of the recording is missing; the file sync is repairing it, try again later."
    )
