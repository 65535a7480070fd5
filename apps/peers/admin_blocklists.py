"""Blocklists in the admin: a list's entries are edited as text, one prefix per line.

Operators paste hundreds of numbers at once; a row per entry would be a page of forms.
Saving compares the text with the entries the page showed and hands the difference to
add_blocklist_entries and remove_blocklist_entries.
"""

import hashlib

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html_join

from apps.core.admin import (
    ADD,
    CHANGE,
    VIEW,
    ReadOnlyModelAdmin,
    ScopedModelAdmin,
    ScopedModelForm,
    ScopedRelatedFilter,
    form_changes,
    form_values,
)
from apps.core.errors import Conflict
from apps.peers import services
from apps.peers.models import Blocklist, BlocklistEntry, Peer


def stored_prefixes(blocklist: Blocklist) -> list[str]:
    return list(blocklist.entries.order_by("prefix").values_list("prefix", flat=True))


def entries_digest(prefixes) -> str:
    """A short fingerprint of a set of prefixes: tells whether the list changed under a form."""
    return hashlib.sha256("\n".join(sorted(set(prefixes))).encode()).hexdigest()


class BlocklistForm(ScopedModelForm):
    """A blocklist with its entries as one prefix per line."""

    prefixes = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 16, "cols": 34}),
        help_text="One prefix per line, digits only. Repeated or already listed prefixes are ignored; "
        "delete a line to unblock it.",
    )
    note = forms.CharField(max_length=200, required=False, help_text="Kept with the prefixes this save adds.")
    # The fingerprint of the entries this page showed: a save never undoes a change made
    # meanwhile by someone else (an API client adding fraud numbers) that it did not show.
    shown_entries = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound and not self.instance._state.adding:
            stored = stored_prefixes(self.instance)
            self.initial["prefixes"] = "\n".join(stored)
            self.initial["shown_entries"] = entries_digest(stored)

    def clean_prefixes(self) -> list[str]:
        lines = (line.strip() for line in self.cleaned_data["prefixes"].splitlines())
        return list(dict.fromkeys(line for line in lines if line))


@admin.register(Blocklist)
class BlocklistAdmin(ScopedModelAdmin):
    # Lists are not deleted here: there is no service for it yet, and peers may use them.
    operator_can = frozenset({VIEW, ADD, CHANGE})
    reseller_can = frozenset({VIEW, ADD, CHANGE})
    owner_field = "reseller"
    # Only the operator's lists apply to every call (Blocklist.clean), and resellers own theirs.
    operator_only_fields = ("reseller", "applies_to_all")
    form = BlocklistForm
    list_display = ("name", "kind", "reseller", "applies_to_all", "entry_count", "updated_at")
    list_filter = ("kind", "applies_to_all", ("reseller", ScopedRelatedFilter))
    list_select_related = ("reseller",)
    search_fields = ("name", "=entries__prefix")

    def base_fieldsets(self, request, obj=None):
        about = ("name", "kind", "reseller", "applies_to_all", "description")
        return [
            (None, {"fields": about if obj is None else (*about, "used_by")}),
            ("Entries", {"fields": ("prefixes", "note", "shown_entries")}),
        ]

    def get_readonly_fields(self, request, obj=None):
        # Kind and owner are fixed at creation (update_blocklist refuses them).
        return () if obj is None else ("kind", "reseller", "used_by")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(entry_total=Count("entries", distinct=True))

    @admin.display(description="entries", ordering="entry_total")
    def entry_count(self, blocklist):
        return blocklist.entry_total

    @admin.display(description="used by")
    def used_by(self, blocklist):
        peers = Peer.objects.filter(blocklists=blocklist)
        if blocklist.reseller_id:
            # Whoever may see a reseller's list sees that reseller's peers, and no others.
            peers = peers.filter(reseller_id=blocklist.reseller_id)
        return format_html_join(", ", "{}", ((peer.name,) for peer in peers)) or "-"

    # -- writes --

    def create_via_service(self, request, form):
        actor = self.scope(request)
        blocklist = services.create_blocklist(actor=actor, **form_values(form))
        data = form.cleaned_data
        if data["prefixes"]:
            services.add_blocklist_entries(blocklist, data["prefixes"], actor=actor, note=data["note"])
        return blocklist

    def update_via_service(self, request, obj, form):
        actor = self.scope(request)
        changes = form_changes(form)
        if changes:
            services.update_blocklist(obj, actor=actor, changes=changes)
        data = form.cleaned_data
        typed, shown = data["prefixes"], data["shown_entries"]
        if entries_digest(typed) == shown:
            return  # the text is what the page showed: the entries were not edited
        stored = stored_prefixes(obj)
        if entries_digest(stored) != shown:
            raise Conflict(
                "Someone changed these entries after this page was opened. Copy your text, reload "
                "the page and make your change again.",
                field="prefixes",
            )
        wanted, present = set(typed), set(stored)
        removed = [prefix for prefix in stored if prefix not in wanted]
        added = [prefix for prefix in typed if prefix not in present]
        if removed:
            services.remove_blocklist_entries(obj, removed, actor=actor)
        if added:
            services.add_blocklist_entries(obj, added, actor=actor, note=data["note"])


@admin.register(BlocklistEntry)
class BlocklistEntryAdmin(ReadOnlyModelAdmin):
    """Every blocked prefix with its note: which list blocks a number, and why."""

    list_display = ("prefix", "blocklist", "note", "created_at")
    list_filter = ("blocklist__kind", ("blocklist", ScopedRelatedFilter))
    list_select_related = ("blocklist",)
    search_fields = ("^prefix", "note")
