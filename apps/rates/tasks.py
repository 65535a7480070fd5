"""django-q2 entry points of the rates app: take ids, call one service."""

from django.contrib.auth import get_user_model

from apps.rates.importing.report import ImportRefused
from apps.rates.models import PriceImport
from apps.rates.services import activation, imports
from apps.tenancy.scope import Scope


def activate_price_import(import_id: int, user_id: int | None = None) -> str:
    """Activate a confirmed import; progress and the report are written on the import itself."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    actor = Scope.of_user(user) if user else Scope.system()
    price_import = PriceImport.objects.get(pk=import_id)
    try:
        # resume=True: a worker killed mid-activation is retried by django-q2, and the
        # retry must clean up and finish what the dead one started.
        activation.activate_price_import(price_import, actor=actor, resume=True)
    except ImportRefused as exc:
        return exc.message
    return "done"


def read_price_import(import_id: int, user_id: int | None = None) -> str:
    """Parse, validate, stage and preview an uploaded file; queued to the node that has it."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    actor = Scope.of_user(user) if user else Scope.system()
    price_import = PriceImport.objects.get(pk=import_id)
    try:
        price_import = imports.read_price_import(price_import, actor=actor)
    except ImportRefused as exc:
        return exc.message
    return price_import.state
