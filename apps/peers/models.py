"""Interconnections: who sends us calls, who terminates them, and how each is reached."""

import ipaddress
import re
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import TimestampedModel, digits_validator, name_taken
from apps.peers.querysets import (
    BlocklistEntryQuerySet,
    BlocklistQuerySet,
    PeerChildQuerySet,
    PeerQuerySet,
)

_hostname_validator = RegexValidator(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$",
    "Enter a host name or an IP address.",
)


def hostname_validator(value: str) -> None:
    """Accept an IPv4 or IPv6 address, or a DNS host name."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        _hostname_validator(value)


def default_time_zone() -> str:
    """The zone a new peer's clock starts in: the installation's (TIME_ZONE, UTC unless set)."""
    return settings.TIME_ZONE


def time_zone_validator(value: str) -> None:
    """Accept an IANA time zone name that zoneinfo knows (Europe/Berlin, America/New_York, UTC)."""
    try:
        if not value or value != value.strip() or value.startswith(("/", ".")):
            raise ValueError(value)
        zoneinfo.ZoneInfo(value)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ValidationError(
            f"'{value}' is not a time zone; use an IANA name such as Europe/Berlin or UTC."
        ) from None


# Audio codecs by FreeSWITCH's names: what a node's FreeSWITCH transcodes between (docs/MEDIA.md).
CODECS = ("PCMU", "PCMA", "G722", "opus", "GSM")


def parse_codecs(value: str) -> list[str]:
    """A comma-separated codec list as canonical names, in order; ValueError names a wrong one."""
    canonical = {codec.lower(): codec for codec in CODECS}
    codecs = []
    for name in filter(None, (part.strip() for part in value.split(","))):
        codec = canonical.get(name.lower())
        if codec is None:
            raise ValueError(f"Unknown codec {name!r}: use {', '.join(CODECS)}.")
        if codec not in codecs:
            codecs.append(codec)
    return codecs


def codec_list_validator(value: str) -> None:
    try:
        parse_codecs(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


sip_user_validator = RegexValidator(r"^[A-Za-z0-9._+-]{1,64}$", "Letters, digits and . _ + - (at most 64).")


class Transport(models.TextChoices):
    UDP = "udp", "UDP"
    TCP = "tcp", "TCP"
    TLS = "tls", "TLS"


class ProfitControl(models.TextChoices):
    PROFIT_ONLY = "profit", "Profit only (buy price below sell price)"
    NO_LOSS = "no_loss", "No loss (buy price at most the sell price)"
    ALLOW_LOSS = "allow_loss", "Allow loss"


class Peer(TimestampedModel):
    """A party we exchange calls with: a customer, a supplier, or both."""

    ProfitControl = ProfitControl

    class Role(models.TextChoices):
        CUSTOMER = "customer", "Customer (originator)"
        SUPPLIER = "supplier", "Supplier (terminator)"
        USER = "user", "User (both directions)"

    name = models.CharField(max_length=100)
    company = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=8, choices=Role.choices)
    reseller = models.ForeignKey(
        "tenancy.Reseller",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="peers",
        help_text="Owner; empty means the operator.",
    )
    enabled = models.BooleanField(default=True)
    suspended_at = models.DateTimeField(null=True, blank=True, editable=False)
    suspended_reason = models.CharField(max_length=200, blank=True, editable=False)
    max_calls = models.PositiveIntegerField(
        null=True, blank=True, help_text="Concurrent calls; empty for no limit."
    )
    max_cps = models.PositiveIntegerField(
        null=True, blank=True, help_text="New calls per second; empty for no limit."
    )
    max_price = models.DecimalField(
        "maximum price",
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Customer: the highest sell price per minute a call may reach; dearer calls are refused.",
    )
    tech_prefix = models.CharField(
        max_length=16,
        blank=True,
        validators=[digits_validator],
        help_text="Digits before the number that tell this peer apart from others on the same IP.",
    )
    sell_rate_table = models.ForeignKey(
        "rates.RateTable",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="customers",
        help_text="The price list this customer pays.",
    )
    buy_rate_table = models.ForeignKey(
        "rates.RateTable",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="suppliers",
        help_text="The price list this supplier charges us.",
    )
    nodes = models.ManyToManyField(
        "nodes.Node",
        blank=True,
        related_name="peers",
        help_text="Nodes that serve this peer; its interconnection sheet lists their addresses.",
    )
    blocklists = models.ManyToManyField("Blocklist", blank=True, related_name="peers")
    routing_plan = models.ForeignKey(
        "routing.RoutingPlan",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="customers",
        help_text="Empty: the owner reseller's plan, else the cluster's default plan.",
    )
    profit_control = models.CharField(
        max_length=10,
        choices=ProfitControl.choices,
        default=ProfitControl.NO_LOSS,
        help_text="Which supplier prices this customer's calls may be routed at, against its sell price.",
    )
    record_calls = models.BooleanField(default=False, help_text="Record this customer's calls.")
    capture_calls = models.BooleanField(
        default=False, help_text="Keep the SIP messages of this peer's calls (a pcap and a ladder per call)."
    )
    recording_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Days this customer's recordings are kept; empty: its reseller's, else the cluster's.",
    )
    codecs = models.CharField(
        max_length=100,
        blank=True,
        validators=[codec_list_validator],
        help_text="Audio codecs this peer takes, e.g. PCMA,PCMU; empty: any. A call whose caller "
        "offers none of a supplier's codecs is transcoded by the node's FreeSWITCH.",
    )
    time_zone = models.CharField(
        max_length=64,
        default=default_time_zone,
        validators=[time_zone_validator],
        help_text="IANA name, e.g. Europe/Berlin: the clock its routing windows and time-of-week "
        "prices (weekend, offpeak) are read on; a supplier's, its buy prices'.",
    )
    notes = models.TextField(blank=True)
    # Printed on the peer's invoices under its company name.
    billing_address = models.TextField(blank=True, help_text="As printed on invoices, one line per line.")
    tax_id = models.CharField(
        max_length=50, blank=True, verbose_name="tax ID", help_text="VAT or GST number."
    )

    objects = PeerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["reseller", "name"], name="peer_unique_name_per_owner"),
        ]
        indexes = [models.Index(fields=["role", "enabled"], name="peer_role_enabled_idx")]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    @property
    def is_customer(self) -> bool:
        return self.role in (self.Role.CUSTOMER, self.Role.USER)

    @property
    def is_supplier(self) -> bool:
        return self.role in (self.Role.SUPPLIER, self.Role.USER)

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

    @property
    def status(self) -> str:
        if not self.enabled:
            return "disabled"
        return "suspended" if self.is_suspended else "active"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if name_taken(self):
            errors["name"] = "This owner already has a peer of that name."
        if self.reseller_id and self.role == self.Role.SUPPLIER:
            errors["role"] = "Suppliers belong to the operator; a reseller's peers are customers or users."
        if self.sell_rate_table_id:
            table = self.sell_rate_table
            if not self.is_customer:
                errors["sell_rate_table"] = "Only customers have a sell price list."
            elif table.purpose != table.Purpose.SELL:
                errors["sell_rate_table"] = "Choose a sell price list."
            elif table.reseller_id != self.reseller_id:
                errors["sell_rate_table"] = "The price list must belong to the peer's owner."
        if self.routing_plan_id and not self.is_customer:
            errors["routing_plan"] = "Only customers have a routing plan."
        if self.buy_rate_table_id:
            table = self.buy_rate_table
            if not self.is_supplier:
                errors["buy_rate_table"] = "Only suppliers have a buy price list."
            elif table.purpose != table.Purpose.BUY:
                errors["buy_rate_table"] = "Choose a buy price list."
        if errors:
            raise ValidationError(errors)


class Endpoint(models.Model):
    """An IP address or network a customer's calls come from (IP authentication)."""

    class Transport(models.TextChoices):
        ANY = "any", _("Any")
        UDP = "udp", "UDP"
        TCP = "tcp", "TCP"
        TLS = "tls", "TLS"

    # Identifying calls by a network wider than this would hand strangers' calls to a peer.
    WIDEST_MASK = {4: 8, 6: 32}

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="endpoints")
    ip = models.GenericIPAddressField(verbose_name="IP address")
    mask = models.PositiveSmallIntegerField(default=32, help_text="Prefix length: 32 for one IPv4 host.")
    port = models.PositiveIntegerField(default=0, help_text="0 matches any source port.")
    transport = models.CharField(max_length=3, choices=Transport.choices, default=Transport.ANY)
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)

    objects = PeerChildQuerySet.as_manager()

    class Meta:
        ordering = ["peer", "ip"]
        indexes = [models.Index(fields=["ip"], name="endpoint_ip_idx")]

    def __str__(self) -> str:
        return self.cidr

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.mask}"

    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr, strict=True)

    def clean(self) -> None:
        if not self.ip:
            return
        try:
            network = self.network()
        except ValueError as exc:
            raise ValidationError({"mask": f"{self.cidr} is not a network: {exc}."}) from None
        if network.prefixlen < self.WIDEST_MASK[network.version]:
            raise ValidationError(
                {"mask": f"/{network.prefixlen} is too wide to identify a customer by its address."}
            )
        if self.port > 65535:
            raise ValidationError({"port": "A port is between 0 and 65535."})
        if self.peer_id and not self.peer.is_customer:
            raise ValidationError(
                {"peer": "IP authentication identifies customers; this peer is a supplier."}
            )
        if any(self.overlaps(other) for other in self.rivals()):
            raise ValidationError(
                {
                    "ip": "Another peer already receives calls from this address (or a network that "
                    "overlaps it) with the same tech prefix; give one of them a distinct tech prefix."
                }
            )

    def rivals(self):
        """Other peers' endpoints that calls from here could be mistaken for."""
        # Two peers on overlapping source addresses are told apart only by their tech prefix.
        tech_prefix = self.peer.tech_prefix if self.peer_id else ""
        return (
            Endpoint.objects.filter(peer__tech_prefix=tech_prefix)
            .exclude(pk=self.pk)
            .exclude(peer=self.peer_id)
            .only("ip", "mask", "port", "transport")
        )

    def overlaps(self, other: "Endpoint") -> bool:
        """Tell whether one packet could match both endpoints (port 0 and "any" match all)."""
        mine, theirs = self.network(), other.network()
        return (
            mine.version == theirs.version
            and mine.overlaps(theirs)
            and (self.port == other.port or 0 in (self.port, other.port))
            and (self.transport == other.transport or self.Transport.ANY in (self.transport, other.transport))
        )


class SipAccount(TimestampedModel):
    """A digest login for a customer's PBX or phone; only HA1 digests are stored."""

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="sip_accounts")
    username = models.CharField(max_length=64, validators=[sip_user_validator])
    domain = models.CharField(max_length=253, validators=[hostname_validator])
    ha1 = models.CharField(max_length=32, editable=False, help_text="MD5(username:domain:password)")
    ha1_sha256 = models.CharField(max_length=64, editable=False)
    enabled = models.BooleanField(default=True)
    # Set by the SIP brute-force controller (apps.fraud); a locked account does not
    # authenticate until a person unlocks it (undoing the alert).
    locked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = PeerChildQuerySet.as_manager()

    class Meta:
        verbose_name = "SIP account"
        ordering = ["username"]
        constraints = [models.UniqueConstraint(fields=["username", "domain"], name="sipaccount_unique_login")]

    def __str__(self) -> str:
        return f"{self.username}@{self.domain}"

    def clean(self) -> None:
        if self.peer_id and not self.peer.is_customer:
            raise ValidationError({"peer": "SIP accounts authenticate customers; this peer is a supplier."})


class Gateway(TimestampedModel):
    """A supplier's SIP destination for our outbound calls."""

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="gateways")
    name = models.CharField(max_length=64)
    host = models.CharField(max_length=253, validators=[hostname_validator])
    port = models.PositiveIntegerField(default=5060)
    transport = models.CharField(max_length=3, choices=Transport.choices, default=Transport.UDP)
    strip_digits = models.PositiveSmallIntegerField(
        default=0, help_text="Leading digits removed from the callee before sending."
    )
    prefix = models.CharField(
        max_length=16, blank=True, validators=[digits_validator], help_text="Digits put before the callee."
    )
    priority = models.PositiveSmallIntegerField(default=0, help_text="Lower is tried first.")
    weight = models.PositiveSmallIntegerField(default=1, help_text="Share among equal priorities.")
    probing = models.BooleanField(
        default=False, help_text="Send OPTIONS pings; skip when it does not answer."
    )
    enabled = models.BooleanField(default=True)

    objects = PeerChildQuerySet.as_manager()

    class Meta:
        ordering = ["peer", "priority", "name"]
        constraints = [models.UniqueConstraint(fields=["peer", "name"], name="gateway_unique_name_per_peer")]

    def __str__(self) -> str:
        return f"{self.peer} / {self.name}"

    @property
    def uri(self) -> str:
        suffix = "" if self.transport == Transport.UDP else f";transport={self.transport}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sip:{host}:{self.port}{suffix}"

    def clean(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValidationError({"port": "A port is between 1 and 65535."})
        if self.peer_id and not self.peer.is_supplier:
            raise ValidationError({"peer": "Gateways terminate calls; this peer is not a supplier."})


class RewriteRule(models.Model):
    """A regular-expression rewrite of a number, applied in `position` order."""

    class Field(models.TextChoices):
        CALLER = "caller", "Caller number"
        CALLER_NAME = "caller_name", "Caller name"
        CALLEE = "callee", "Callee number"

    class Direction(models.TextChoices):
        INGRESS = "ingress", "Ingress (calls from this peer)"
        EGRESS = "egress", "Egress (calls to this peer)"

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="rewrite_rules")
    field = models.CharField(max_length=11, choices=Field.choices)
    direction = models.CharField(max_length=7, choices=Direction.choices, default=Direction.INGRESS)
    pattern = models.CharField(max_length=200, help_text=r"Python regular expression, e.g. ^00(\d+)$")
    replacement = models.CharField(max_length=200, blank=True, help_text=r"e.g. \1")
    position = models.PositiveSmallIntegerField(default=0)
    enabled = models.BooleanField(default=True)

    objects = PeerChildQuerySet.as_manager()

    class Meta:
        ordering = ["peer", "direction", "field", "position"]

    def __str__(self) -> str:
        return f"{self.field}: s/{self.pattern}/{self.replacement}/"

    def clean(self) -> None:
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValidationError({"pattern": f"Not a regular expression: {exc}."}) from None
        try:
            compiled.sub(self.replacement, "")
        except (re.error, IndexError) as exc:
            raise ValidationError({"replacement": f"Refers to a group the pattern lacks: {exc}."}) from None

    def apply(self, value: str) -> str:
        return re.sub(self.pattern, self.replacement, value, count=1)


class Blocklist(TimestampedModel):
    """A list of blocked destination prefixes or caller/callee numbers, shared by peers."""

    class Kind(models.TextChoices):
        DESTINATION = "destination", "Destination prefixes"
        CALLER = "caller", "Caller numbers"
        CALLEE = "callee", "Callee numbers"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=11, choices=Kind.choices)
    reseller = models.ForeignKey(
        "tenancy.Reseller", null=True, blank=True, on_delete=models.PROTECT, related_name="blocklists"
    )
    applies_to_all = models.BooleanField(
        default=False, help_text="Checked for every call, not only for the peers that use it."
    )
    description = models.TextField(blank=True)

    objects = BlocklistQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["reseller", "name"], name="blocklist_unique_name_per_owner")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if name_taken(self):
            raise ValidationError({"name": "This owner already has a blocklist of that name."})
        if self.applies_to_all and self.reseller_id:
            raise ValidationError({"applies_to_all": "Only the operator's lists apply to every call."})


class BlocklistEntry(models.Model):
    """One blocked prefix (destinations) or number (callers, callees); prefixes match leading digits."""

    blocklist = models.ForeignKey(Blocklist, on_delete=models.CASCADE, related_name="entries")
    prefix = models.CharField(max_length=32, validators=[digits_validator])
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = BlocklistEntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "blocklist entries"
        ordering = ["blocklist", "prefix"]
        constraints = [
            models.UniqueConstraint(fields=["blocklist", "prefix"], name="blocklistentry_unique_prefix")
        ]

    def __str__(self) -> str:
        return self.prefix


sip_uri_validator = RegexValidator(
    r"^sips?:[^\s]{1,250}$", "A SIP URI such as sip:registrar.example.com:5060."
)


class Registration(TimestampedModel):
    """An outbound registration of ours to a supplier's registrar (OpenSIPS uac_registrant).

    In dedicated-IP origination every node registers its own account from its own address
    (one row per node); in shared-IP origination one row registers from the shared IP,
    sent by whichever node holds it.
    """

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="registrations")
    registrar = models.CharField(
        max_length=255, validators=[sip_uri_validator], help_text="e.g. sip:registrar.example.com"
    )
    proxy = models.CharField(
        max_length=255, blank=True, validators=[sip_uri_validator], help_text="Outbound proxy, if any."
    )
    aor = models.CharField(
        "AOR", max_length=255, validators=[sip_uri_validator], help_text="e.g. sip:4420000000@example.com"
    )
    username = models.CharField(max_length=64, blank=True, help_text="Authentication user name.")
    password = models.CharField(
        max_length=64,
        blank=True,
        help_text="Stored in clear: OpenSIPS's uac_registrant needs the password itself to answer "
        "the registrar's digest challenge.",
    )
    expiry = models.PositiveIntegerField(default=3600, help_text="Seconds asked for each registration.")
    node = models.ForeignKey(
        "nodes.Node",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="registrations",
        help_text="The node that registers this account (dedicated-IP origination); empty in "
        "shared-IP origination.",
    )
    enabled = models.BooleanField(default=True)

    objects = PeerChildQuerySet.as_manager()

    class Meta:
        ordering = ["peer", "registrar", "node"]

    def __str__(self) -> str:
        where = f" from {self.node}" if self.node_id else ""
        return f"{self.aor} at {self.registrar}{where}"

    def clean(self) -> None:
        from apps.nodes.models import ClusterSettings

        errors: dict[str, str] = {}
        if not 60 <= (self.expiry or 0) <= 86400:
            errors["expiry"] = "Between 60 seconds and one day."
        if self.peer_id and not self.peer.is_supplier:
            errors["peer"] = "We register to suppliers' registrars; this peer is not a supplier."
        shared = ClusterSettings.load().origination_mode == ClusterSettings.OriginationMode.SHARED
        if shared and self.node_id:
            errors["node"] = (
                "In shared-IP origination one registration serves the cluster from the shared IP: "
                "leave the node empty."
            )
        elif not shared and not self.node_id:
            errors["node"] = (
                "In dedicated-IP origination each node registers its own account from its own "
                "address: choose the node."
            )
        elif self.peer_id and self.duplicates().exists():
            errors["node"] = (
                "This supplier already has a registration to this registrar from this node."
                if self.node_id
                else "This supplier already has a registration to this registrar."
            )
        if errors:
            raise ValidationError(errors)

    def duplicates(self):
        """Other registrations of this supplier to this registrar from the same node."""
        return Registration.objects.filter(
            peer=self.peer_id, registrar=self.registrar, node=self.node_id
        ).exclude(pk=self.pk)

    def socket(self, cluster, nodes) -> str:
        """The socket uac_registrant sends from: the node's own address, or the shared IP.

        `cluster` is the ClusterSettings row, `nodes` the enabled nodes (for the shared IP's
        port, which every node listens on). Raises ValueError naming what is missing.
        """
        if cluster.origination_mode == cluster.OriginationMode.SHARED:
            if not cluster.shared_ip:
                raise ValueError("shared-IP origination has no shared IP")
            ports = {node.sip_port for node in nodes} or {5060}
            if len(ports) > 1:
                raise ValueError(f"the nodes listen on different SIP ports ({sorted(ports)})")
            return _udp_socket(cluster.shared_ip, ports.pop())
        if self.node is None:
            raise ValueError("no node chosen")
        return _udp_socket(self.node.sip_address, self.node.sip_port)


def _udp_socket(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"udp:{host}:{port}"
