"""Announcements and the refusals that play them: the operator's, invisible to resellers.

Resellers do not manage announcements: the audio reaches every node's FreeSWITCH and is
heard by every caller of the cluster-wide rules, so it is the operator's to vouch for; a
reseller's customer gets its own announcement through a per-peer rule the operator sets.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.utils.html import format_html

from apps.core.admin import ScopedModelAdmin, ScopedModelForm
from apps.media import announcements
from apps.media.models import Announcement, AnnouncementRule, max_bytes, max_seconds


class AnnouncementForm(ScopedModelForm):
    upload = forms.FileField(
        required=False,
        help_text=f"WAV, 16-bit PCM, mono, 8 or 16 kHz, at most {max_seconds()} s.",
    )

    class Meta:
        model = Announcement
        fields = ("name",)

    def clean_upload(self):
        upload = self.cleaned_data.get("upload")
        if upload is None:
            if self.instance._state.adding:
                raise ValidationError("Upload the audio.")
            return None
        if upload.size > max_bytes():
            raise ValidationError(f"The file is {upload.size:,} bytes; at most {max_bytes():,} are accepted.")
        data = upload.read()
        # Checked and set here so that the model's own validation sees the audio.
        self.instance.set_audio(data)
        return data

    def _post_clean(self):
        # Without playable audio the model's check would only repeat the upload's error.
        if "upload" not in self.errors:
            super()._post_clean()


@admin.register(Announcement)
class AnnouncementAdmin(ScopedModelAdmin):
    form = AnnouncementForm
    list_display = ("name", "length", "sample_rate", "size", "used_by", "updated_at")
    search_fields = ("name",)
    readonly_fields = ("player_note", "file_name", "length", "sample_rate", "size", "sha256", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "upload")}),
        ("Audio", {"fields": ("length", "sample_rate", "size", "file_name", "sha256", "player_note")}),
        (None, {"fields": ("updated_at",)}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).defer("audio").annotate(rule_count=Count("rules"))

    @admin.display(description="length")
    def length(self, obj):
        return f"{obj.duration_ms / 1000:.1f} s" if obj.duration_ms else "-"

    @admin.display(description="rules", ordering="rule_count")
    def used_by(self, obj):
        return obj.rule_count

    @admin.display(description="on the nodes")
    def player_note(self, obj):
        return format_html(
            "Written by every node into its announcements directory as <code>{}</code>.", obj.file_name
        )

    def create_via_service(self, request, form):
        return announcements.create_announcement(
            name=form.cleaned_data["name"], audio=form.cleaned_data["upload"], actor=self.scope(request)
        )

    def update_via_service(self, request, obj, form):
        announcements.update_announcement(
            obj,
            actor=self.scope(request),
            name=form.cleaned_data["name"],
            audio=form.cleaned_data.get("upload"),
        )

    def delete_via_service(self, request, obj):
        announcements.delete_announcement(obj, actor=self.scope(request))


@admin.register(AnnouncementRule)
class AnnouncementRuleAdmin(ScopedModelAdmin):
    list_display = ("kind", "who", "announcement", "updated_at")
    list_filter = ("kind",)
    list_select_related = ("peer", "announcement")
    fields = ("kind", "peer", "announcement")

    def get_queryset(self, request):
        return (
            super().get_queryset(request).select_related("peer", "announcement").defer("announcement__audio")
        )

    @admin.display(description="for", ordering="peer__name")
    def who(self, obj):
        return obj.peer.name if obj.peer_id else "everyone"

    def create_via_service(self, request, form):
        return announcements.save_rule(form.instance, actor=self.scope(request))

    def update_via_service(self, request, obj, form):
        announcements.save_rule(obj, actor=self.scope(request))

    def delete_via_service(self, request, obj):
        announcements.delete_rule(obj, actor=self.scope(request))
