"""Who changed what, and when: written by services, never edited."""

from django.conf import settings
from django.db import models

from apps.audit.querysets import AuditQuerySet


class AuditEntry(models.Model):
    """A record of one change made through a service."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=100, help_text="Login, API key or 'system'.")
    action = models.CharField(max_length=64, help_text="e.g. peer.suspended")
    object_type = models.CharField(max_length=64, help_text="app_label.model")
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    # The tenant the object belongs to, so resellers read their own trail.
    reseller = models.ForeignKey(
        "tenancy.Reseller", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "audit entries"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
            models.Index(fields=["-created_at"], name="audit_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.object_repr}"
