"""Controllers (what to watch, over which window, what to do) and the alerts they raise.

One model for every limit that acts on its own (docs/FRAUD.md): a `Controller` is a rule, an
`Alert` is one episode of it — the subject it caught, what was measured against what, the
action taken and until when. The action's effect is read from the open alerts themselves
(call control's snapshot reads excluded routes, blocked numbers and banned addresses from
them), so ending or undoing the alert is what lifts it; a suspension or a locked SIP account
is also written on the peer or the account, which the alert's undo reverts.
"""

from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.core.models import TimestampedModel
from apps.fraud.querysets import AlertQuerySet, ControllerQuerySet


class Kind(models.TextChoices):
    TERMINATION = "termination", "Termination quality (ASR, ACD, FAS of suppliers)"
    BURST = "burst", "Origination burst (calls or spend above the customer's baseline)"
    NEW_DESTINATION = "new_destination", "High-cost destination the customer never called"
    SEQUENTIAL = "sequential", "Short calls to sequential numbers"
    REPEATED_NUMBER = "repeated_number", "Repeated number"
    SIP_AUTH = "sip_auth", "SIP brute force (failed digest authentications)"
    LOGIN = "login", "Admin and portal logins"


class Metric(models.TextChoices):
    ASR = "asr", "ASR (answered attempts, %)"
    ACD = "acd", "ACD (average answered call, seconds)"
    FAS = "fas", "FAS (answered calls shorter than the short-call seconds, %)"
    CALLS = "calls", "Calls in the window"
    SPEND = "spend", "Spend in the window"
    CALLEE = "callee", "Same callee"
    CALLER = "caller", "Same caller"


# The metrics each kind may watch; a kind absent here takes none (metric left blank).
KIND_METRICS = {
    Kind.TERMINATION: (Metric.ASR, Metric.ACD, Metric.FAS),
    Kind.BURST: (Metric.CALLS, Metric.SPEND),
    Kind.REPEATED_NUMBER: (Metric.CALLEE, Metric.CALLER),
}


class Action(models.TextChoices):
    """What a controller does when its threshold is crossed."""

    WARN = "warn", "Warn only"
    # Termination: exclude the route; origination: suspend the customer and end its live
    # calls; repeated number: refuse the number; SIP: ban the source address (and lock the
    # SIP account past its own limit); logins: lock the user out from that address.
    BLOCK = "block", "Act (exclude, suspend, refuse, ban or lock out)"


class Controller(TimestampedModel):
    """A rule: what to watch, over which window, past which threshold, and what to do.

    The fields each kind reads (the others are ignored; `clean` checks those it needs):

    termination      metric asr/acd/fas, threshold (ASR/FAS in %, ACD in seconds; below it
                     for ASR and ACD, above it for FAS), min_count (attempts before it
                     judges), per_destination, short_seconds (FAS), peer (one supplier, or
                     all), block_minutes, trial_share and trial_minutes (re-admission).
    burst            metric calls/spend, threshold (a factor over the customer's baseline:
                     the same hour of the previous `baseline_days` days), floor (the least
                     absolute value that may trigger it), window_minutes, peer (one
                     customer, or all the owner's).
    new_destination  threshold (a sell price per minute: at or above it a destination is
                     high-cost), baseline_days (how far back "never called" looks),
                     min_count (calls to it in the window).
    sequential       min_count (short calls to consecutive numbers), short_seconds.
    repeated_number  metric callee/caller, min_count (calls allowed to one number in the
                     window: the next is refused), cluster_wide (count every customer's calls
                     together, or each customer's).
    sip_auth         min_count (failures from one address in the window: then it is banned
                     on every node), account_limit (failures of one SIP account: then it is
                     locked until a person unlocks it).
    login            min_count (failures of one user from one address: then locked out).

    Every kind uses window_minutes and block_minutes (0: until a person ends it) and
    `action` (warn only, or act).
    """

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    metric = models.CharField(max_length=8, choices=Metric.choices, blank=True)
    reseller = models.ForeignKey(
        "tenancy.Reseller",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="controllers",
        help_text="Owner; empty means the operator. A reseller's controllers watch its customers only.",
    )
    peer = models.ForeignKey(
        "peers.Peer",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="controllers",
        help_text="Watch only this customer or supplier; empty: every one the owner has.",
    )
    enabled = models.BooleanField(default=True)
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.WARN)
    window_minutes = models.PositiveIntegerField(
        default=15, validators=[MinValueValidator(1), MaxValueValidator(7 * 24 * 60)]
    )
    min_count = models.PositiveIntegerField(
        default=50, help_text="Attempts before judging, or the count that triggers it (see the kind)."
    )
    threshold = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    floor = models.DecimalField(
        max_digits=14,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Burst: the least calls or spend in the window that may trigger it.",
    )
    per_destination = models.BooleanField(
        default=True, help_text="Termination: judge each supplier per destination, not as a whole."
    )
    short_seconds = models.PositiveIntegerField(
        default=6, help_text="FAS and sequential calls: a short call."
    )
    baseline_days = models.PositiveIntegerField(default=7, validators=[MinValueValidator(1)])
    account_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="SIP brute force: failures of one SIP account before it is locked."
    )
    cluster_wide = models.BooleanField(
        default=False, help_text="Repeated number: count every customer's calls together."
    )
    block_minutes = models.PositiveIntegerField(
        default=30, help_text="How long the action holds; 0: until a person ends it."
    )
    trial_share = models.PositiveSmallIntegerField(
        default=100,
        validators=[MaxValueValidator(100)],
        help_text="Termination: after the block, the share of calls (%) the route gets during the trial.",
    )
    trial_minutes = models.PositiveIntegerField(default=0, help_text="Termination: how long the trial lasts.")
    notify = models.BooleanField(default=True, help_text="E-mail the owner once per episode.")

    objects = ControllerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["reseller", "name"], name="controller_unique_name_per_owner")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        allowed = KIND_METRICS.get(self.kind, ())
        if allowed and self.metric not in allowed:
            errors["metric"] = "Choose one of: " + ", ".join(str(Metric(m).label) for m in allowed) + "."
        elif not allowed and self.metric:
            errors["metric"] = "This kind watches no metric."
        if self.kind in (Kind.TERMINATION, Kind.BURST, Kind.NEW_DESTINATION) and self.threshold is None:
            errors["threshold"] = "This kind needs a threshold."
        if self.threshold is not None and self.threshold < 0:
            errors["threshold"] = "A threshold is zero or more."
        if (
            self.kind == Kind.TERMINATION
            and self.metric in (Metric.ASR, Metric.FAS)
            and (self.threshold or 0) > 100
        ):
            errors["threshold"] = "A percentage is at most 100."
        if self.min_count < 1:
            errors["min_count"] = "At least 1."
        if self.reseller_id and self.kind in (Kind.TERMINATION, Kind.SIP_AUTH, Kind.LOGIN):
            errors["kind"] = "Suppliers, SIP authentication and logins are watched by the operator."
        if self.peer_id and self.reseller_id and self.peer.reseller_id != self.reseller_id:
            errors["peer"] = "A reseller's controller watches its own customers."
        if errors:
            raise ValidationError(errors)


class Alert(models.Model):
    """One episode of a controller: the subject it caught, the measure, the action and its end.

    At most one open alert per controller and subject: `open_key` holds the episode's key
    while it is open and NULL once it ends (NULLs never collide in a unique index, on every
    database), so a controller round that sees the same subject again updates the open alert
    instead of raising (and e-mailing) another.
    """

    class Effect(models.TextChoices):
        """What the alert does while it is in force (the controller's action, made concrete)."""

        WARNING = "warning", "Warning only"
        EXCLUDE_ROUTE = "exclude_route", "Route excluded"
        SUSPEND_PEER = "suspend_peer", "Customer suspended"
        BLOCK_NUMBER = "block_number", "Number refused"
        BAN_ADDRESS = "ban_address", "Source address banned"
        LOCK_ACCOUNT = "lock_account", "SIP account locked"
        LOCK_LOGIN = "lock_login", "Login locked out"

    controller = models.ForeignKey(
        Controller, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    effect = models.CharField(max_length=16, choices=Effect.choices)
    # Whose staff see it: the subject's reseller (NULL: the operator's).
    reseller = models.ForeignKey(
        "tenancy.Reseller", null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    # The subject: what the alert is about (the fields that apply are set).
    peer = models.ForeignKey(
        "peers.Peer", null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    destination = models.CharField(max_length=100, blank=True)
    number = models.CharField(max_length=64, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    username = models.CharField(max_length=150, blank=True, help_text="SIP account or login user.")
    sip_account = models.ForeignKey(
        "peers.SipAccount", null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    subject = models.CharField(max_length=200, help_text="The subject in words.")
    # The measure.
    measured = models.DecimalField(max_digits=18, decimal_places=4)
    threshold = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    attempts = models.PositiveIntegerField(null=True, blank=True)
    window_minutes = models.PositiveIntegerField()
    detail = models.TextField(blank=True)
    # The episode.
    open_key = models.CharField(max_length=255, null=True, blank=True, unique=True, editable=False)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(help_text="The latest round that still saw it.")
    ends_at = models.DateTimeField(
        null=True, blank=True, help_text="When the action ends; empty: until a person ends it."
    )
    trial_until = models.DateTimeField(
        null=True, blank=True, help_text="Termination: the trial after the block."
    )
    trial_share = models.PositiveSmallIntegerField(default=100)
    ended_at = models.DateTimeField(null=True, blank=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    undone_reason = models.CharField(max_length=200, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["ended_at", "effect"], name="alert_open_effect"),
            models.Index(fields=["started_at"], name="alert_started"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.subject}"

    def in_force(self, now: datetime) -> bool:
        if self.ended_at is not None:
            return False
        return (
            self.ends_at is None
            or self.ends_at > now
            or (self.trial_until is not None and self.trial_until > now)
        )

    def in_trial(self, now: datetime) -> bool:
        """Termination: the block is over and the route takes `trial_share` % of calls."""
        return (
            self.ended_at is None
            and self.ends_at is not None
            and self.ends_at <= now
            and self.trial_until is not None
            and self.trial_until > now
        )


class AuthFailure(models.Model):
    """One failed authentication (SIP digest or web login), counted by the brute-force controllers.

    Written by every node (a SIP failure is reported by its OpenSIPS to call control), read
    over the controller's window; rows older than the longest window are deleted by the sweep.
    """

    class Realm(models.TextChoices):
        SIP = "sip", "SIP digest"
        WEB = "web", "Admin or portal login"
        # Not a failure: a request for a password-reset e-mail, counted to limit them.
        RESET = "rst", "Password reset request"

    realm = models.CharField(max_length=3, choices=Realm.choices)
    source_ip = models.GenericIPAddressField()
    username = models.CharField(max_length=150, blank=True)
    node = models.ForeignKey("nodes.Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["realm", "source_ip", "created_at"], name="authfailure_ip"),
            models.Index(fields=["realm", "username", "created_at"], name="authfailure_user"),
            models.Index(fields=["created_at"], name="authfailure_created"),
        ]

    def __str__(self) -> str:
        return f"{self.realm} {self.username or '-'} from {self.source_ip}"
