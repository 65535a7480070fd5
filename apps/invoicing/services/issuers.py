"""The write path of issuer profiles: what an issuer's invoices say."""

import mimetypes

from apps.core.db import retry_on_conflict
from apps.core.errors import DomainError
from apps.core.services import apply_changes, ensure_manages, save_object
from apps.invoicing.models import Issuer
from apps.tenancy.scope import Scope

ISSUER_SETTINGS = (
    "legal_name",
    "address",
    "tax_id",
    "email",
    "phone",
    "website",
    "logo",
    "bank_details",
    "footer",
    "language",
    "invoice_prefix",
    "credit_note_prefix",
    "tax_name",
    "tax_rate",
    "payment_terms_days",
)


@retry_on_conflict
def create_issuer(*, actor: Scope, reseller_id: int | None, **fields) -> Issuer:
    """Create the issuer profile of `reseller_id` (None: the operator's); one each."""
    if actor.is_reseller:
        reseller_id = actor.reseller_id
    ensure_manages(actor, reseller_id)
    key = Issuer.key_for(reseller_id)
    if Issuer.objects.filter(key=key).exists():
        raise DomainError("This issuer has a profile already; change that one.", field="reseller")
    issuer = apply_changes(Issuer(key=key, reseller_id=reseller_id), fields, allowed=ISSUER_SETTINGS)
    _keep_logo(issuer)
    return save_object(issuer, actor=actor, action="issuer.created")


@retry_on_conflict
def update_issuer(issuer: Issuer, *, actor: Scope, changes: dict) -> Issuer:
    """Change what an issuer's documents say; never its owner or its numbering sequence."""
    ensure_manages(actor, issuer.reseller_id)
    current = Issuer.objects.select_for_update().get(pk=issuer.pk)
    apply_changes(current, changes, allowed=ISSUER_SETTINGS)
    if "logo" in changes:
        _keep_logo(current)
    return save_object(current, actor=actor, action="issuer.changed")


def _keep_logo(issuer: Issuer) -> None:
    """Copy a newly uploaded logo's bytes into the profile's row (cleared with the logo)."""
    if not issuer.logo:
        issuer.logo_data, issuer.logo_type = None, ""
        return
    if getattr(issuer.logo, "_committed", True):
        return  # the file it had: its bytes are in the row already
    upload = issuer.logo.file
    upload.seek(0)
    issuer.logo_data = upload.read()
    upload.seek(0)
    issuer.logo_type = mimetypes.guess_type(issuer.logo.name)[0] or ""
