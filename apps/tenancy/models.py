"""Who may act on what: resellers, their staff, customer logins and API keys."""

import hashlib
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from apps.core.models import CurrencyField, MoneyField, TimestampedModel
from apps.tenancy.querysets import ApiKeyQuerySet, ResellerQuerySet


class Reseller(TimestampedModel):
    """A company that sells our service to its own customers under its own prices."""

    name = models.CharField(max_length=100, unique=True)
    company = models.CharField(max_length=200, blank=True)
    currency = CurrencyField(default="USD")
    email = models.EmailField(blank=True)
    is_active = models.BooleanField(default=True)
    routing_plan = models.ForeignKey(
        "routing.RoutingPlan",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="resellers",
        help_text="Routing of this reseller's customers that have no plan of their own.",
    )
    daily_spend_limit = MoneyField(
        null=True,
        blank=True,
        help_text="Most all its customers together may spend on calls in a day (in the reseller's currency).",
    )
    monthly_spend_limit = MoneyField(
        null=True,
        blank=True,
        help_text="Most all its customers together may spend on calls in a calendar month.",
    )
    recording_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Days its customers' recordings are kept unless a customer says otherwise; "
        "empty: the cluster's RECORDING_RETENTION_DAYS.",
    )
    rate_table = models.ForeignKey(
        "rates.RateTable",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="resellers_charged",
        help_text="The operator's prices for this reseller: its customers' calls are charged to "
        "the reseller's account at these (with its account, billing.Account).",
    )

    objects = ResellerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        for name in ("daily_spend_limit", "monthly_spend_limit"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValidationError({name: "A spend limit is zero or more."})


class Membership(models.Model):
    """Ties a login to the tenant it acts for: a reseller's staff, or a customer peer.

    A user with no membership is nobody unless it is a superuser (the operator).
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    reseller = models.ForeignKey(
        Reseller, null=True, blank=True, on_delete=models.CASCADE, related_name="staff"
    )
    peer = models.ForeignKey(
        "peers.Peer", null=True, blank=True, on_delete=models.CASCADE, related_name="logins"
    )
    # The portal's language for this login, applied when it signs in (the language cookie
    # then carries it); empty: the browser's Accept-Language. A code of settings.LANGUAGES,
    # checked by the service rather than as choices, so a new language needs no migration.
    language = models.CharField(max_length=10, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(reseller__isnull=False, peer__isnull=True)
                    | models.Q(reseller__isnull=True, peer__isnull=False)
                ),
                name="membership_reseller_xor_peer",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.reseller or self.peer}"

    def clean(self) -> None:
        if bool(self.reseller_id) == bool(self.peer_id):
            raise ValidationError("A login belongs either to a reseller's staff or to one customer.")
        if self.peer_id and not self.peer.is_customer:
            raise ValidationError({"peer": "Only a customer (or user) peer can have portal logins."})


class ApiKey(TimestampedModel):
    """A secret for the REST API, stored as a SHA-256 digest, scoped like a login.

    Keys carry 256 random bits, so a fast digest is safe to store and cheap to check on
    every request; the slow password hasher is for human-chosen passwords.
    """

    class Scope(models.TextChoices):
        OPERATOR = "operator", "Operator"
        RESELLER = "reseller", "Reseller"
        CUSTOMER = "customer", "Customer"

    class Access(models.TextChoices):
        READ = "read", "Read"
        READ_WRITE = "read_write", "Read and write"

    PREFIX = "ssk_"

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=10, choices=Scope.choices)
    # A read key may only GET, HEAD and OPTIONS (apps.tenancy.api.permissions.HasScope); keys
    # issued before access levels existed wrote, and still do.
    access = models.CharField(max_length=10, choices=Access.choices, default=Access.READ_WRITE)
    reseller = models.ForeignKey(
        Reseller, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    peer = models.ForeignKey(
        "peers.Peer", null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    lookup = models.CharField(max_length=12, unique=True, help_text="Visible start of the key.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.lookup}…)"

    def clean(self) -> None:
        expected = {
            self.Scope.OPERATOR: (False, False),
            self.Scope.RESELLER: (True, False),
            self.Scope.CUSTOMER: (False, True),
        }.get(self.scope)
        if expected is None:
            raise ValidationError({"scope": "Choose operator, reseller or customer."})
        if (bool(self.reseller_id), bool(self.peer_id)) != expected:
            raise ValidationError(
                "An operator key has no reseller or peer; a reseller key names its reseller; "
                "a customer key names its peer."
            )
        if self.peer_id and not self.peer.is_customer:
            raise ValidationError({"peer": "Only customers (or user peers) get customer keys."})

    @staticmethod
    def digest_of(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def new_token(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)
