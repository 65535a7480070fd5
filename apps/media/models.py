"""Announcements: audio played as early media before a refusal, and which refusal plays which.

The audio is kept in the database, not as a synced file: every node reads the same rows
(Galera) and writes the files its FreeSWITCH plays from them (apps.media.announcements),
so an upload on any node reaches every node without a file-sync origin, and a node that
was away catches up from the database alone. The files are small (AUDIO_MAX_BYTES).
"""

import hashlib
import io
import wave
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.text import slugify

from apps.core.models import TimestampedModel
from apps.core.querysets import ScopedQuerySet

SAMPLE_RATES = (8000, 16000)


def max_seconds() -> int:
    return int(getattr(settings, "ANNOUNCEMENT_MAX_SECONDS", 60))


def max_bytes() -> int:
    # 60 s of 16 kHz 16-bit mono is 1.9 MB.
    return int(getattr(settings, "ANNOUNCEMENT_MAX_BYTES", 2 * 1024 * 1024))


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    duration_ms: int


def inspect_audio(data: bytes) -> AudioInfo:
    """What `data` holds if FreeSWITCH can play it as an announcement; ValidationError saying
    what is wrong otherwise (WAV, 16-bit PCM, mono, 8 or 16 kHz, size and length limits)."""
    if len(data) > max_bytes():
        raise ValidationError(f"The file is {len(data):,} bytes; at most {max_bytes():,} are accepted.")
    try:
        with wave.open(io.BytesIO(data)) as audio:
            channels, width, rate, frames = (
                audio.getnchannels(),
                audio.getsampwidth(),
                audio.getframerate(),
                audio.getnframes(),
            )
    except (wave.Error, EOFError) as exc:
        raise ValidationError(f"Not a WAV file of PCM audio ({exc}). Save it as WAV, 16-bit PCM.") from None
    problems = []
    if width != 2:
        problems.append(f"{width * 8}-bit samples (use 16-bit PCM)")
    if channels != 1:
        problems.append(f"{channels} channels (use mono)")
    if rate not in SAMPLE_RATES:
        problems.append(f"{rate} Hz (use 8000 or 16000 Hz)")
    if problems:
        raise ValidationError(f"The WAV file has {', '.join(problems)}.")
    duration_ms = frames * 1000 // rate
    if duration_ms == 0:
        raise ValidationError("The WAV file holds no audio.")
    if duration_ms > max_seconds() * 1000:
        raise ValidationError(f"The audio lasts {duration_ms / 1000:.1f} s; at most {max_seconds()} s.")
    return AudioInfo(sample_rate=rate, duration_ms=duration_ms)


class OperatorOnlyQuerySet(ScopedQuerySet):
    # The cluster's announcements: the operator's, no reseller or customer manages them.
    pass


class RefusalKind(models.TextChoices):
    """Refusals an announcement may precede, from call control's rejections (docs/MEDIA.md)."""

    INSUFFICIENT_FUNDS = "insufficient_funds", "Insufficient funds (402)"
    NO_ROUTE = "no_route", "No route or no rate (503, 404)"
    BLOCKED = "blocked", "Blocked number (403)"
    SUSPENDED = "suspended", "Account suspended or disabled (403)"
    TOO_MANY_CALLS = "too_many_calls", "Too many calls at once (486)"
    NOT_IN_SERVICE = "not_in_service", "Number not in service (404)"
    UNAVAILABLE = "unavailable", "Number temporarily unavailable (480)"


class Announcement(TimestampedModel):
    """An audio file a refusal may play to the caller before its SIP code."""

    name = models.CharField(max_length=100, unique=True)
    audio = models.BinaryField(editable=False)
    size = models.PositiveIntegerField(default=0, editable=False)
    sha256 = models.CharField(max_length=64, editable=False)
    sample_rate = models.PositiveIntegerField(default=8000, editable=False)
    duration_ms = models.PositiveIntegerField(default=0, editable=False)

    objects = OperatorOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def file_name(self) -> str:
        return announcement_file_name(self.name, self.sha256)

    def set_audio(self, data: bytes) -> None:
        """Take `data` as this announcement's audio, checked (ValidationError)."""
        info = inspect_audio(data)
        self.audio = data
        self.size = len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.sample_rate, self.duration_ms = info.sample_rate, info.duration_ms

    def clean(self) -> None:
        if not self.audio:
            raise ValidationError({"audio": "Upload the audio (WAV, 16-bit PCM, mono, 8 or 16 kHz)."})
        if not slugify(self.name):
            raise ValidationError({"name": "Use at least one letter or digit."})


def announcement_file_name(name: str, sha256: str) -> str:
    """The file FreeSWITCH plays: named after the content, so a new upload is a new file and
    a call never plays a file being rewritten (FreeSWITCH's X-SS-Announce pattern allows it)."""
    return f"{slugify(name)[:60]}-{sha256[:12]}.wav"


class AnnouncementRule(models.Model):
    """Which announcement a refusal of `kind` plays: cluster-wide, or for one calling peer.

    A peer's rule without an announcement silences the cluster's for that peer.
    """

    kind = models.CharField(max_length=24, choices=RefusalKind.choices)
    peer = models.ForeignKey(
        "peers.Peer",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="announcement_rules",
        help_text="The refused caller; empty for every caller without a rule of its own.",
    )
    announcement = models.ForeignKey(
        Announcement,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rules",
        help_text="Empty on a peer's rule: no announcement for that peer.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = OperatorOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["kind", "peer__name"]
        # One rule per peer and kind. The cluster-wide one (peer NULL) is kept single by
        # clean() in the one write path: MariaDB builds no conditional unique index.
        constraints = [
            models.UniqueConstraint(fields=["kind", "peer"], name="announcement_rule_one_per_peer_kind"),
        ]

    def __str__(self) -> str:
        who = self.peer.name if self.peer_id else "everyone"
        return f"{self.get_kind_display()} for {who}"

    def clean(self) -> None:
        if self.peer_id is None and self.announcement_id is None:
            raise ValidationError({"announcement": "A cluster-wide rule names its announcement."})
        same = AnnouncementRule.objects.filter(kind=self.kind, peer_id=self.peer_id).exclude(pk=self.pk)
        if self.kind and same.exists():
            # The constraint's message names no field, and it never sees cluster-wide clashes.
            who = "this peer" if self.peer_id else "every caller"
            raise ValidationError({"kind": f"There is already a rule for this refusal for {who}."})
