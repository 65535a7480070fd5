"""Routing plans: which suppliers a call may go to, in which order, and how much we learn from it."""

from django.core.exceptions import ValidationError
from django.db import models

from apps.core.models import TimestampedModel, digits_validator
from apps.peers.models import codec_list_validator
from apps.routing.querysets import (
    QualityStatQuerySet,
    RouteQuerySet,
    RoutingPlanQuerySet,
    RoutingRuleQuerySet,
)


class RoutingPlan(TimestampedModel):
    """A named set of routing rules given to customers (the seed product's "route class")."""

    name = models.CharField(max_length=100, unique=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="Rules of this plan are tried first; a number none of them matches follows the parent's.",
    )
    description = models.TextField(blank=True)

    objects = RoutingPlanQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def ancestors(self) -> list["RoutingPlan"]:
        """This plan and its parents, nearest first; stops at a loop instead of spinning."""
        chain, seen, plan = [], set(), self
        while plan is not None and plan.pk not in seen:
            chain.append(plan)
            seen.add(plan.pk)
            plan = plan.parent
        return chain

    def clean(self) -> None:
        if self.parent_id is not None:
            parent = self.parent
            if self.pk is not None and any(plan.pk == self.pk for plan in parent.ancestors()):
                raise ValidationError({"parent": "A plan cannot inherit from itself or its own children."})


class Method(models.TextChoices):
    LEAST_COST = "lcr", "Least cost"
    PRIORITY = "priority", "Static priority"
    WEIGHT = "weight", "Percentage split (weights)"
    QUALITY = "quality", "Quality (ASR/ACD)"
    BLOCK = "block", "Block"


class QualityMetric(models.TextChoices):
    ASR = "asr", "ASR (answered / attempts)"
    ACD = "acd", "ACD (average answered duration)"


class RoutingRule(models.Model):
    """Where numbers matching a prefix (and optionally a destination name) go, and in which order."""

    plan = models.ForeignKey(RoutingPlan, on_delete=models.CASCADE, related_name="rules")
    prefix = models.CharField(
        max_length=32,
        blank=True,
        validators=[digits_validator],
        help_text="Callee prefix after ingress rewriting; empty matches every number.",
    )
    destination = models.CharField(
        max_length=100,
        blank=True,
        help_text="Also require the customer's rate destination to start with this text "
        "(case-insensitive), e.g. 'Germany - Mobile'.",
    )
    time_profile = models.ForeignKey(
        "rates.TimeProfile",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="routing_rules",
        verbose_name="window",
        help_text="Only in these hours of the week, on the customer's clock; empty: at any time. "
        "In its window a rule wins over one of the same prefix without a window.",
    )
    method = models.CharField(max_length=8, choices=Method.choices, default=Method.LEAST_COST)
    quality_metric = models.CharField(max_length=3, choices=QualityMetric.choices, default=QualityMetric.ASR)
    quality_tolerance = models.PositiveSmallIntegerField(
        default=5,
        help_text="Quality values are rounded down to steps of this size (ASR points, ACD seconds) "
        "so that near-equal suppliers tie and are then ordered by cost.",
    )
    position = models.PositiveSmallIntegerField(
        default=0, help_text="Between rules of equal prefix and destination, lower wins."
    )
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)

    objects = RoutingRuleQuerySet.as_manager()

    class Meta:
        ordering = ["plan", "prefix", "destination", "position", "id"]
        indexes = [models.Index(fields=["plan", "prefix"], name="routingrule_plan_prefix_idx")]

    def __str__(self) -> str:
        target = self.prefix or "any number"
        if self.destination:
            target += f" ({self.destination})"
        if self.time_profile_id:
            target += f" [{self.time_profile.name}]"
        return f"{target}: {self.get_method_display()}"

    def clean(self) -> None:
        if self.method == Method.QUALITY and self.quality_tolerance == 0:
            raise ValidationError({"quality_tolerance": "Use a step of at least 1."})


class Route(models.Model):
    """One supplier (or one of its gateways) a rule may send calls to."""

    rule = models.ForeignKey(RoutingRule, on_delete=models.CASCADE, related_name="routes")
    supplier = models.ForeignKey("peers.Peer", on_delete=models.PROTECT, related_name="routes")
    gateway = models.ForeignKey(
        "peers.Gateway",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="routes",
        help_text="Empty: every enabled gateway of the supplier, in their priority order.",
    )
    priority = models.PositiveSmallIntegerField(default=0, help_text="Static priority: lower is tried first.")
    weight = models.PositiveSmallIntegerField(
        default=1, help_text="Percentage split: share of first attempts."
    )
    max_calls = models.PositiveIntegerField(
        null=True, blank=True, help_text="Concurrent calls on this route; empty for no limit."
    )
    setup_timeout = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Seconds to wait for the supplier to ring or answer before trying the next route.",
    )
    stop_hunting = models.BooleanField(
        default=False, help_text="If this route fails, do not try the routes after it."
    )
    record_calls = models.BooleanField(
        default=False, help_text="Record calls sent on this route (through the node's FreeSWITCH)."
    )
    codecs = models.CharField(
        max_length=100,
        blank=True,
        validators=[codec_list_validator],
        help_text="Audio codecs this route takes, e.g. PCMA; empty: the supplier's.",
    )
    capture_calls = models.BooleanField(
        default=False, help_text="Keep the SIP messages of calls sent on this route."
    )
    enabled = models.BooleanField(default=True)

    objects = RouteQuerySet.as_manager()

    class Meta:
        ordering = ["rule", "priority", "id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "supplier", "gateway"], name="route_unique_per_rule"),
        ]

    def __str__(self) -> str:
        return f"{self.supplier}" + (f" via {self.gateway.name}" if self.gateway_id else "")

    def clean(self) -> None:
        errors = {}
        if self.supplier_id and not self.supplier.is_supplier:
            errors["supplier"] = "Routes go to suppliers (or users)."
        elif self.supplier_id and self.supplier.reseller_id is not None:
            errors["supplier"] = "Routes go to the operator's suppliers."
        if self.gateway_id and self.gateway.peer_id != self.supplier_id:
            errors["gateway"] = "This gateway belongs to another supplier."
        if self.setup_timeout is not None and not 1 <= self.setup_timeout <= 300:
            errors["setup_timeout"] = "Between 1 and 300 seconds."
        if errors:
            raise ValidationError(errors)


class QualityStat(models.Model):
    """ASR and ACD of one supplier towards one destination over the recent window, from CDRs."""

    supplier = models.ForeignKey("peers.Peer", on_delete=models.CASCADE, related_name="quality_stats")
    destination = models.CharField(max_length=100)
    attempts = models.PositiveIntegerField()
    answered = models.PositiveIntegerField()
    answered_seconds = models.PositiveBigIntegerField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()

    objects = QualityStatQuerySet.as_manager()

    class Meta:
        ordering = ["supplier", "destination"]
        constraints = [
            models.UniqueConstraint(fields=["supplier", "destination"], name="qualitystat_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.supplier} → {self.destination}"

    @property
    def asr(self) -> float:
        """Answered attempts, in percent."""
        return 100.0 * self.answered / self.attempts if self.attempts else 0.0

    @property
    def acd(self) -> float:
        """Average answered call, in seconds."""
        return self.answered_seconds / self.answered if self.answered else 0.0


class RoutingGeneration(models.Model):
    """One counter, bumped after every committed change that call control's memory depends on."""

    SINGLETON_ID = 1

    value = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"generation {self.value}"
