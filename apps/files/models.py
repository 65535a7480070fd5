"""Recordings and captures, and where each one is in the cluster."""

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from apps.files.querysets import FileCopyQuerySet, NodeStorageQuerySet, StoredFileQuerySet
from engines.rsync import Target, check_relative_path


class StoredFile(models.Model):
    """A finished recording or capture, made on its origin node and copied to every other."""

    class Kind(models.TextChoices):
        RECORDING = "recording", "Recording"
        CAPTURE = "capture", "Capture"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    origin = models.ForeignKey("nodes.Node", on_delete=models.PROTECT, related_name="+")
    relative_path = models.CharField(
        max_length=255, help_text="Below the kind's directory: <origin>/<yyyy>/<mm>/<dd>/<name>."
    )
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    # The CDR this file belongs to, by SIP Call-ID; no foreign key so a file can come first.
    call_id = models.CharField(max_length=255, blank=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # A tombstone: the file is gone from its origin and is being deleted on every node.
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_reason = models.CharField(max_length=200, blank=True)

    objects = StoredFileQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "relative_path"], name="storedfile_unique_path")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.relative_path}"

    def clean(self) -> None:
        try:
            path = check_relative_path(self.relative_path)
        except ValueError as exc:
            raise ValidationError({"relative_path": str(exc)}) from None
        if self.origin_id and path.parts[0] != self.origin.name:
            raise ValidationError(
                {"relative_path": f"A file of {self.origin.name} lives under {self.origin.name}/."}
            )
        if self.size is not None and self.size < 0:
            raise ValidationError({"size": "A size is not negative."})

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class FileCopy(models.Model):
    """Whether one file is on one node (or, for a deleted file, gone from it)."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        PRESENT = "present", "Present"
        FAILED = "failed", "Failed"
        DELETED = "deleted", "Deleted"

    file = models.ForeignKey(StoredFile, on_delete=models.CASCADE, related_name="copies")
    node = models.ForeignKey("nodes.Node", on_delete=models.PROTECT, related_name="file_copies")
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # When the origin's retry sweep sends it again; None after an error no retry can fix.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = FileCopyQuerySet.as_manager()

    class Meta:
        ordering = ["file", "node"]
        verbose_name_plural = "file copies"
        constraints = [models.UniqueConstraint(fields=["file", "node"], name="filecopy_unique_node")]
        indexes = [models.Index(fields=["node", "state"], name="filecopy_node_state")]

    def __str__(self) -> str:
        return f"{self.file.relative_path} on {self.node.name}: {self.state}"


class NodeStorage(models.Model):
    """Where one node's files land when its address alone does not say (ports, SSH users)."""

    node = models.OneToOneField("nodes.Node", on_delete=models.CASCADE, related_name="storage")
    sync_target = models.CharField(
        max_length=255,
        help_text="rsync://host:port/module, user@host:/path or /path, holding recordings/ and captures/.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = NodeStorageQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "node storage"

    def __str__(self) -> str:
        return f"{self.node.name}: {self.sync_target}"

    def clean(self) -> None:
        try:
            Target(self.sync_target)
        except ValueError as exc:
            raise ValidationError({"sync_target": str(exc)}) from None
