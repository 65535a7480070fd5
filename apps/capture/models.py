"""Cluster-wide capture settings; which peers and routes capture is on Peer and Route."""

from django.core.exceptions import ValidationError
from django.db import models


class CaptureSettings(models.Model):
    """The one row of cluster-wide capture settings: the sampled share of all calls."""

    SINGLETON_ID = 1

    sample_percent = models.PositiveSmallIntegerField(
        default=0,
        help_text=(
            "Share of all calls captured whatever their peer and route say, 0-100 "
            "(chosen by Call-ID, so every node decides the same for a call)."
        ),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "capture settings"
        verbose_name_plural = "capture settings"

    def __str__(self) -> str:
        return "Capture settings"

    def clean(self) -> None:
        if not 0 <= self.sample_percent <= 100:
            raise ValidationError({"sample_percent": "A share between 0 and 100 %."})

    @classmethod
    def load(cls) -> "CaptureSettings":
        current, _ = cls.objects.get_or_create(pk=cls.SINGLETON_ID)
        return current
