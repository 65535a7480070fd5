"""The machines of the cluster and the settings they share."""

import ipaddress
import secrets

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from apps.core.models import TimestampedModel
from apps.nodes.querysets import NodeQuerySet

node_name_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,30}$", "Lower-case letters, digits and dashes (it names a task queue)."
)


interface_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$", "A network interface name, such as eth0 or ens3."
)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_vrrp_password() -> str:
    # VRRP's simple authentication compares at most 8 characters.
    return secrets.token_hex(4)


class Node(TimestampedModel):
    """One cluster member running web, workers, OpenSIPS and FreeSWITCH."""

    name = models.CharField(max_length=31, unique=True, validators=[node_name_validator])
    management_address = models.GenericIPAddressField(
        help_text="Address for MI, ESL, rsync and Galera traffic between nodes."
    )
    sip_address = models.GenericIPAddressField(
        help_text="Dedicated SIP address of this node, given to peers for their ACLs."
    )
    sip_port = models.PositiveIntegerField(default=5060)
    public_hostname = models.CharField(max_length=253, blank=True)
    enabled = models.BooleanField(default=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True, editable=False)
    # Sent by this node's OpenSIPS with every call-control request (rendered into its
    # config); a request naming this node without it is refused.
    call_control_secret = models.CharField(max_length=64, default=new_secret, editable=False)
    media_enabled = models.BooleanField(
        default=True, help_text="This node runs FreeSWITCH for calls that need media."
    )
    media_port = models.PositiveIntegerField(
        default=5080,
        help_text="FreeSWITCH's SIP port on the SIP address, reached only by this node's OpenSIPS.",
    )
    esl_port = models.PositiveIntegerField(
        default=8021, help_text="FreeSWITCH's event socket port on the management address."
    )
    # Rendered into this node's FreeSWITCH config and used by the ESL driver; never shown.
    esl_password = models.CharField(max_length=64, default=new_secret, editable=False)
    vrrp_interface = models.CharField(
        max_length=15,
        default="eth0",
        validators=[interface_name_validator],
        help_text="Network interface keepalived adds the shared IP to on this node.",
    )
    dns_weight = models.PositiveSmallIntegerField(
        default=10,
        help_text="SRV weight of this node in the cluster's DNS name (DNS load balancing): its "
        "share of the calls among the live nodes.",
    )
    vrrp_priority = models.PositiveSmallIntegerField(
        default=100,
        help_text="1-254: of the live nodes, the one of the highest priority holds the shared IP.",
    )

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["sip_address", "sip_port"], name="node_unique_sip_socket")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {
            field: "A port is between 1 and 65535."
            for field in ("sip_port", "media_port", "esl_port")
            if not 1 <= (getattr(self, field) or 0) <= 65535
        }
        if not 1 <= (self.vrrp_priority or 0) <= 254:
            errors["vrrp_priority"] = "VRRP priorities are between 1 and 254."
        if not errors:
            errors = self._sip_port_clashes()
        if errors:
            raise ValidationError(errors)

    def _sip_port_clashes(self) -> dict[str, str]:
        """Ports of the SIP address this node would bind twice, by field.

        OpenSIPS and FreeSWITCH of every node on this address bind it: one port each (nodes
        share an address in tests and on a one-machine lab cluster)."""
        if self.media_port == self.sip_port:
            return {"media_port": "FreeSWITCH needs a port of its own, not OpenSIPS's SIP port."}
        others = Node.objects.filter(sip_address=self.sip_address).exclude(pk=self.pk)
        errors = {}
        for field in ("sip_port", "media_port"):
            port = getattr(self, field)
            user = others.filter(models.Q(sip_port=port) | models.Q(media_port=port)).first()
            if user is not None:
                errors[field] = f"Port {port} of {self.sip_address} is used by node {user}."
        return errors


class ClusterSettings(models.Model):
    """The one row of cluster-wide switching settings."""

    class OriginationMode(models.TextChoices):
        DEDICATED = "dedicated", "Dedicated IP per node"
        SHARED = "shared", "Shared cluster IP"

    SINGLETON_ID = 1

    origination_mode = models.CharField(
        max_length=10, choices=OriginationMode.choices, default=OriginationMode.DEDICATED
    )
    shared_ip = models.GenericIPAddressField(
        null=True, blank=True, help_text="Virtual IP moved between nodes by keepalived (VRRP)."
    )
    # Dedicated-IP origination listens on every address and advertises each node's own.
    bind_address = models.GenericIPAddressField(
        default="0.0.0.0",  # noqa: S104
        help_text="Address OpenSIPS listens on in dedicated-IP mode.",
    )
    shared_ip_prefix_length = models.PositiveSmallIntegerField(
        default=32,
        help_text="Prefix length keepalived gives the shared IP on the nodes' interface "
        "(32: a host address).",
    )
    vrrp_router_id = models.PositiveSmallIntegerField(
        default=51,
        help_text="VRRP virtual router id of the shared IP (1-255), unique among the VRRP "
        "routers of its network.",
    )
    vrrp_password = models.CharField(
        max_length=8,
        default=new_vrrp_password,
        help_text="VRRP authentication between the nodes' keepalived (8 characters at most).",
    )
    vrrp_advert_ms = models.PositiveIntegerField(
        default=1000,
        help_text="Milliseconds between VRRP advertisements: a dead holder is replaced after about "
        "three. 1000 (whole seconds): VRRP 2 with the password. Shorter: VRRP 3, which has no "
        "password; the nodes then take advertisements from each other's addresses only.",
    )
    shared_ip_preempt = models.BooleanField(
        default=False,
        help_text="When a node of higher priority comes back, it takes the shared IP back. Off: the "
        "address stays where it is until its holder fails (one move per failure, not two).",
    )
    redirect_to_assigned_node = models.BooleanField(
        default=False,
        help_text="Answer calls that reach a node their peer is not assigned to with a "
        "redirect to a live assigned node instead of a rejection.",
    )
    distribute_shared_ip = models.BooleanField(
        default=False,
        help_text="Automatic load balancing (dedicated-IP origination): a call sent to the shared "
        "IP is redirected (302) to the live node with the fewest calls, on that node's own "
        "address; customers configure the one address, no media passes the shared IP.",
    )
    serve_when_assigned_nodes_down = models.BooleanField(
        default=False,
        help_text="Service-level HA: while every node a peer is assigned to is down (heartbeat "
        "stale), the other nodes serve its calls; once one is back, they refuse or redirect "
        "again. Off: node-level HA, the peer's calls wait for its own nodes.",
    )
    default_routing_plan = models.ForeignKey(
        "routing.RoutingPlan",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Routing of customers with no plan of their own or of their reseller.",
    )
    max_call_duration = models.PositiveIntegerField(
        default=7200,
        help_text="Seconds: the longest call granted, however much money there is.",
    )
    reservation_grace = models.PositiveIntegerField(
        default=120,
        help_text="Seconds a call's money stays reserved beyond its maximum duration before it "
        "is released as lost (a call whose CDR never arrived).",
    )
    quality_window = models.PositiveIntegerField(
        default=60, help_text="Minutes of CDRs behind each supplier's ASR and ACD."
    )
    recording_stereo = models.BooleanField(
        default=True,
        help_text="Record calls in stereo (the caller on the left channel, the callee on the right); "
        "off: both mixed into one channel, half the disk.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "cluster settings"
        verbose_name_plural = "cluster settings"

    def __str__(self) -> str:
        return "Cluster settings"

    def clean(self) -> None:
        if self.pk is not None and self.pk != self.SINGLETON_ID:
            raise ValidationError("There is one cluster settings row.")
        if self.origination_mode == self.OriginationMode.SHARED and not self.shared_ip:
            raise ValidationError({"shared_ip": "Shared-IP origination needs the shared IP."})
        if self.distribute_shared_ip and (
            not self.shared_ip or self.origination_mode != self.OriginationMode.DEDICATED
        ):
            raise ValidationError(
                {"distribute_shared_ip": "Distributing needs the shared IP and dedicated-IP origination."}
            )
        if self.shared_ip and ipaddress.ip_address(self.shared_ip).is_unspecified:
            raise ValidationError({"shared_ip": "The shared IP must be a real address."})
        widest = 128 if self.shared_ip and ipaddress.ip_address(self.shared_ip).version == 6 else 32
        if not 1 <= (self.shared_ip_prefix_length or 0) <= widest:
            raise ValidationError({"shared_ip_prefix_length": f"Between 1 and {widest}."})
        if not 100 <= (self.vrrp_advert_ms or 0) <= 10000 or self.vrrp_advert_ms % 10:
            raise ValidationError({"vrrp_advert_ms": "Between 100 and 10000, in steps of 10 (centiseconds)."})
        if not 1 <= (self.vrrp_router_id or 0) <= 255:
            raise ValidationError({"vrrp_router_id": "Between 1 and 255."})
        if not self.vrrp_password or not self.vrrp_password.isprintable() or " " in self.vrrp_password:
            raise ValidationError({"vrrp_password": "1 to 8 printable characters, no space."})
        if not 10 <= self.max_call_duration <= 86400:
            raise ValidationError({"max_call_duration": "Between 10 seconds and one day."})
        if not 1 <= self.quality_window <= 10080:
            raise ValidationError({"quality_window": "Between 1 minute and one week."})

    @classmethod
    def load(cls) -> "ClusterSettings":
        settings, _ = cls.objects.get_or_create(pk=cls.SINGLETON_ID)
        return settings


class EngineSync(models.Model):
    """What a node's engine still has to reload from the database, and how its reloads went."""

    class Engine(models.TextChoices):
        OPENSIPS = "opensips", "OpenSIPS"

    # One flag per reloadable module (engines.opensips.RELOAD_COMMANDS): a change sets its
    # flags with one UPDATE, no read-modify-write of a list, so two nodes marking the same
    # row at once only ever both set a flag.
    MODULES = ("address", "drouting", "registrant")
    NOT_INSTALLED = "OpenSIPS not installed on this node"

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="engine_syncs")
    engine = models.CharField(max_length=16, choices=Engine.choices, default=Engine.OPENSIPS)
    pending_address = models.BooleanField(default=False)
    pending_drouting = models.BooleanField(default=False)
    pending_registrant = models.BooleanField(default=False)
    pending_since = models.DateTimeField(null=True, blank=True)
    # Raised by every change: a reload clears the flags only if no change came after the
    # state it reloaded (a change committed during the reload stays pending).
    generation = models.PositiveBigIntegerField(default=0)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Failed reloads since the last success.")
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        verbose_name = "engine sync"
        constraints = [models.UniqueConstraint(fields=["node", "engine"], name="engine_sync_one_per_node")]

    def __str__(self) -> str:
        return f"{self.get_engine_display()} on {self.node}"

    @property
    def pending_modules(self) -> list[str]:
        return [module for module in self.MODULES if getattr(self, f"pending_{module}")]

    @property
    def not_installed(self) -> bool:
        """The node's last reload found no OpenSIPS there (apps.nodes.sync), and none succeeded since."""
        return self.last_error == self.NOT_INSTALLED and (
            self.last_success_at is None or (self.last_error_at and self.last_error_at > self.last_success_at)
        )

    def summary(self) -> str:
        """One line: in sync, or what is pending and how many reloads of it failed."""
        if not self.pending_modules:
            return self.NOT_INSTALLED if self.not_installed else "in sync"
        pending = f"pending {', '.join(self.pending_modules)}"
        return f"{pending}: failed {self.attempts}x" if self.attempts else pending
