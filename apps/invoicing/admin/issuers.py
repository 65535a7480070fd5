"""Issuer profiles in the admin: what an issuer's invoices say, edited by its own staff.

The operator sees and edits every profile; a reseller's staff only their reseller's, which
they create once if it does not exist yet (the first invoice otherwise makes it from the
reseller's name and e-mail).
"""

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.validators import FileExtensionValidator
from django.http import HttpResponseRedirect
from django.urls import reverse

from apps.core.admin import ADD, CHANGE, VIEW, ScopedModelAdmin, ScopedModelForm, form_changes, form_values
from apps.invoicing.models import Issuer
from apps.invoicing.services import issuers

LOGO_TYPES = ("png", "jpg", "jpeg", "svg")
LOGO_MAX_BYTES = 2 * 1024 * 1024  # what documents embed; a larger logo would be left out


class IssuerForm(ScopedModelForm):
    language = forms.ChoiceField(
        choices=settings.LANGUAGES, help_text=Issuer._meta.get_field("language").help_text
    )

    class Meta:
        model = Issuer
        fields = "__all__"

    def clean_logo(self):
        logo = self.cleaned_data.get("logo")
        if logo and getattr(logo, "size", 0) > LOGO_MAX_BYTES:
            raise ValidationError("A logo is at most 2 MB.")
        return logo


@admin.register(Issuer)
class IssuerAdmin(ScopedModelAdmin):
    form = IssuerForm
    operator_can = frozenset({VIEW, ADD, CHANGE})
    reseller_can = frozenset({VIEW, ADD, CHANGE})
    owner_field = "reseller"
    operator_only_fields = ("reseller",)
    list_display = ("legal_name", "reseller", "tax_id", "tax", "language", "numbers")
    list_select_related = ("reseller",)
    search_fields = ("legal_name", "tax_id")
    fieldsets = (
        (None, {"fields": ("reseller", "legal_name", "address", "tax_id", "logo")}),
        ("Contact", {"fields": ("email", "phone", "website")}),
        (
            "Invoices",
            {
                "fields": (
                    "language",
                    ("invoice_prefix", "credit_note_prefix"),
                    "next_numbers",
                    ("tax_name", "tax_rate"),
                    "payment_terms_days",
                    "bank_details",
                    "footer",
                )
            },
        ),
    )

    def add_view(self, request, form_url="", extra_context=None):
        # One profile each: staff whose reseller has one already are taken to it.
        scope = self.scope(request)
        if scope.is_reseller:
            existing = Issuer.objects.filter(reseller_id=scope.reseller_id).first()
            if existing is not None:
                return HttpResponseRedirect(reverse("admin:invoicing_issuer_change", args=[existing.pk]))
        return super().add_view(request, form_url, extra_context)

    def get_readonly_fields(self, request, obj=None):
        return ("next_numbers",) if obj is None else ("reseller", "next_numbers")

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "logo" and field is not None:
            field.validators.append(FileExtensionValidator(LOGO_TYPES))
        if db_field.name == "reseller" and field is not None:
            field.help_text = "Empty: the operator's own profile."
        return field

    @admin.display(description="tax")
    def tax(self, issuer):
        return f"{issuer.tax_name} {issuer.tax_rate.normalize():f}%"

    @admin.display(description="next numbers")
    def numbers(self, issuer):
        return (
            f"{issuer.invoice_prefix}{issuer.next_invoice:06d}, "
            f"{issuer.credit_note_prefix}{issuer.next_credit_note:06d}"
        )

    @admin.display(description="next numbers")
    def next_numbers(self, issuer):
        if issuer is None or issuer.pk is None:
            return "The first invoice is number 1 of its prefix."
        return self.numbers(issuer)

    def create_via_service(self, request, form):
        values = form_values(form, exclude=("reseller",))
        reseller = form.cleaned_data.get("reseller")
        return issuers.create_issuer(
            actor=self.scope(request), reseller_id=reseller.pk if reseller else None, **values
        )

    def update_via_service(self, request, obj, form):
        changes = form_changes(form, exclude=("reseller",))
        if changes:
            issuers.update_issuer(obj, actor=self.scope(request), changes=changes)
