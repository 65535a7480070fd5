"""OpenSIPS's own tables, in the product's database, with OpenSIPS 3.6's exact schema.

OpenSIPS reads (and for `location`, `acc` and `missed_calls` writes) these tables by
name; nothing here is ours but the extra columns of `acc` and `missed_calls`, which the
rendered config fills through acc's `extra_fields`. Only `apps.opensips.provisioning`
writes the provisioned tables, from our own models; docs/OPENSIPS_TABLES.md says which
model writes which row. Column names, types, lengths, NULL-ness and defaults follow
scripts/mysql/*-create.sql of OpenSIPS 3.6 (tests/opensips/test_tables.py checks them).
"""

from datetime import UTC, datetime

from django.db import models

from apps.opensips.fields import (
    FixedCharField,
    PlainBlobField,
    PlainDateTimeField,
    PlainTextField,
    ScaledFloatField,
    UnsignedAutoField,
    UnsignedBigAutoField,
)

# usrloc's "never modified" marker, as its create script spells the default.
EPOCH_1900 = datetime(1900, 1, 1, 0, 0, 1, tzinfo=UTC)

# The version of each table's schema that OpenSIPS 3.6 checks at startup (the create
# scripts' INSERT INTO version rows); migration 0002 writes them.
TABLE_VERSIONS = {
    "address": 5,
    "subscriber": 8,
    "dr_gateways": 6,
    "dr_rules": 4,
    "dr_carriers": 3,
    "dr_groups": 2,
    "registrant": 3,
    "location": 1013,
    "acc": 7,
    "missed_calls": 5,
    "dialog": 12,
}


class Version(models.Model):
    """A table's schema version, checked by OpenSIPS modules when they start."""

    # The script's table has no id: its unique table_name serves as the primary key.
    table_name = FixedCharField(max_length=32, primary_key=True)
    table_version = models.PositiveIntegerField(db_default=0)

    class Meta:
        db_table = "version"

    def __str__(self) -> str:
        return f"{self.table_name} v{self.table_version}"


class Address(models.Model):
    """permissions: a source address of a customer (grp 1) or of a supplier's gateway (grp 2,
    the calls it delivers to our DIDs); context_info = the peer id."""

    CUSTOMER_GROUP = 1
    SUPPLIER_GROUP = 2

    id = UnsignedAutoField(primary_key=True)
    grp = models.PositiveSmallIntegerField(db_default=0)
    ip = FixedCharField(max_length=50)
    mask = models.PositiveSmallIntegerField(db_default=32)
    port = models.PositiveSmallIntegerField(db_default=0)
    proto = FixedCharField(max_length=4, db_default="any")
    pattern = FixedCharField(max_length=64, null=True, db_default=None)
    context_info = FixedCharField(max_length=32, null=True, db_default=None)

    class Meta:
        db_table = "address"

    def __str__(self) -> str:
        return f"{self.ip}/{self.mask}:{self.port} ({self.proto})"


class Subscriber(models.Model):
    """auth_db: a SIP account's digests (HA1 only; the password column stays empty)."""

    id = UnsignedAutoField(primary_key=True)
    username = FixedCharField(max_length=64, db_default="")
    domain = FixedCharField(max_length=64, db_default="")
    password = FixedCharField(max_length=25, db_default="")
    ha1 = FixedCharField(max_length=64, db_default="")
    ha1_sha256 = FixedCharField(max_length=64, db_default="")
    ha1_sha512t256 = FixedCharField(max_length=64, db_default="")

    class Meta:
        db_table = "subscriber"
        constraints = [models.UniqueConstraint(fields=["username", "domain"], name="account_idx")]
        indexes = [models.Index(fields=["username"], name="username_idx")]

    def __str__(self) -> str:
        return f"{self.username}@{self.domain}"


class DrGateway(models.Model):
    """drouting: a supplier gateway, gwid = our Gateway's id."""

    id = UnsignedAutoField(primary_key=True)
    gwid = FixedCharField(max_length=64, unique=True)
    type = models.PositiveIntegerField(db_default=0)
    address = FixedCharField(max_length=128)
    strip = models.PositiveIntegerField(db_default=0)
    pri_prefix = FixedCharField(max_length=16, null=True, db_default=None)
    attrs = FixedCharField(max_length=255, null=True, db_default=None)
    probe_mode = models.PositiveIntegerField(db_default=0)
    state = models.PositiveIntegerField(db_default=0)
    socket = FixedCharField(max_length=128, null=True, db_default=None)
    description = FixedCharField(max_length=128, null=True, db_default=None)

    class Meta:
        db_table = "dr_gateways"

    def __str__(self) -> str:
        return f"{self.gwid} {self.address}"


class DrRule(models.Model):
    """drouting: a routing rule (unused: call control hands OpenSIPS the gateway list)."""

    ruleid = UnsignedAutoField(primary_key=True)
    groupid = FixedCharField(max_length=255)
    prefix = FixedCharField(max_length=64)
    timerec = FixedCharField(max_length=255, null=True, db_default=None)
    priority = models.IntegerField(db_default=0)
    routeid = FixedCharField(max_length=255, null=True, db_default=None)
    gwlist = FixedCharField(max_length=255, null=True)
    sort_alg = FixedCharField(max_length=1, db_default="N")
    sort_profile = models.PositiveIntegerField(null=True, db_default=None)
    attrs = FixedCharField(max_length=255, null=True, db_default=None)
    description = FixedCharField(max_length=128, null=True, db_default=None)

    class Meta:
        db_table = "dr_rules"

    def __str__(self) -> str:
        return f"{self.groupid} {self.prefix}"


class DrCarrier(models.Model):
    """drouting: a carrier (unused; drouting loads the table)."""

    id = UnsignedAutoField(primary_key=True)
    carrierid = FixedCharField(max_length=64, unique=True)
    gwlist = FixedCharField(max_length=255)
    flags = models.PositiveIntegerField(db_default=0)
    sort_alg = FixedCharField(max_length=1, db_default="N")
    state = models.PositiveIntegerField(db_default=0)
    attrs = FixedCharField(max_length=255, null=True, db_default=None)
    description = FixedCharField(max_length=128, null=True, db_default=None)

    class Meta:
        db_table = "dr_carriers"

    def __str__(self) -> str:
        return self.carrierid


class DrGroup(models.Model):
    """drouting: a user's routing group (unused; drouting loads the table)."""

    id = UnsignedAutoField(primary_key=True)
    username = FixedCharField(max_length=64)
    domain = FixedCharField(max_length=128, null=True, db_default=None)
    groupid = models.PositiveIntegerField(db_default=0)
    description = FixedCharField(max_length=128, null=True, db_default=None)

    class Meta:
        db_table = "dr_groups"

    def __str__(self) -> str:
        return f"{self.username} -> {self.groupid}"


class Registrant(models.Model):
    """uac_registrant: one outbound registration as one node (or the shared IP) sends it."""

    id = UnsignedAutoField(primary_key=True)
    registrar = FixedCharField(max_length=255, db_default="")
    proxy = FixedCharField(max_length=255, null=True, db_default=None)
    aor = FixedCharField(max_length=255, db_default="")
    third_party_registrant = FixedCharField(max_length=255, null=True, db_default=None)
    username = FixedCharField(max_length=64, null=True, db_default=None)
    password = FixedCharField(max_length=64, null=True, db_default=None)
    binding_uri = FixedCharField(max_length=255, db_column="binding_URI", db_default="")
    binding_params = FixedCharField(max_length=64, null=True, db_default=None)
    expiry = models.PositiveIntegerField(null=True, db_default=None)
    forced_socket = FixedCharField(max_length=64, null=True, db_default=None)
    cluster_shtag = FixedCharField(max_length=64, null=True, db_default=None)
    state = models.IntegerField(db_default=0)

    class Meta:
        db_table = "registrant"
        constraints = [
            models.UniqueConstraint(fields=["aor", "binding_uri", "registrar"], name="registrant_idx")
        ]

    def __str__(self) -> str:
        return f"{self.aor} via {self.forced_socket or 'any socket'}"


class Location(models.Model):
    """usrloc: a registered contact (written by OpenSIPS, sql-only mode on the shared DB)."""

    contact_id = UnsignedBigAutoField(primary_key=True)
    username = FixedCharField(max_length=64, db_default="")
    domain = FixedCharField(max_length=64, null=True, db_default=None)
    contact = PlainTextField()
    received = FixedCharField(max_length=255, null=True, db_default=None)
    path = FixedCharField(max_length=255, null=True, db_default=None)
    expires = models.PositiveIntegerField()
    q = ScaledFloatField(db_default=1.0)
    callid = FixedCharField(max_length=255, db_default="Default-Call-ID")
    cseq = models.IntegerField(db_default=13)
    last_modified = PlainDateTimeField(db_default=EPOCH_1900)
    flags = models.IntegerField(db_default=0)
    cflags = FixedCharField(max_length=255, null=True, db_default=None)
    user_agent = FixedCharField(max_length=255, db_default="")
    socket = FixedCharField(max_length=64, null=True, db_default=None)
    methods = models.IntegerField(null=True, db_default=None)
    sip_instance = FixedCharField(max_length=255, null=True, db_default=None)
    kv_store = PlainTextField(null=True, db_default=None)
    attr = FixedCharField(max_length=255, null=True, db_default=None)

    class Meta:
        db_table = "location"
        # Not in OpenSIPS's script: with usrloc in sql-only mode every INVITE looks its
        # callee up here (the on-net check) and every REGISTER finds its AOR, so without an
        # index each of them reads the whole table of registered devices.
        indexes = [models.Index(fields=["username", "domain"], name="location_aor_idx")]

    def __str__(self) -> str:
        return f"{self.username}@{self.domain}"


class AccountingRow(models.Model):
    """Columns shared by `acc` and `missed_calls`: OpenSIPS's, then ours (acc extra_fields)."""

    id = UnsignedAutoField(primary_key=True)
    method = FixedCharField(max_length=16, db_default="")
    from_tag = FixedCharField(max_length=64, db_default="")
    # Nullable, unlike the script: OpenSIPS writes NULL for replies it generates itself.
    to_tag = FixedCharField(max_length=64, null=True, db_default="")
    callid = FixedCharField(max_length=64, db_default="")
    sip_code = FixedCharField(max_length=3, db_default="")
    sip_reason = FixedCharField(max_length=32, db_default="")
    time = PlainDateTimeField()
    setuptime = models.PositiveIntegerField(db_default=0)
    created = PlainDateTimeField(null=True, db_default=None)
    # Ours, filled by the rendered config from call control's answer. The text columns are
    # nullable: acc writes NULL for an extra it has no value for, even an empty string, and a
    # NOT NULL column would make MariaDB refuse the whole row — the call's CDR lost.
    peer_id = models.IntegerField(null=True, db_default=None)
    node = models.CharField(max_length=31, null=True, db_default="")
    reservation_id = models.BigIntegerField(null=True, db_default=None)
    supplier_id = models.IntegerField(null=True, db_default=None)
    gateway_id = models.IntegerField(null=True, db_default=None)
    source_ip = models.CharField(max_length=64, null=True, db_default="")
    caller = models.CharField(max_length=64, null=True, db_default="")
    callee = models.CharField(max_length=64, null=True, db_default="")
    callee_out = models.CharField(max_length=64, null=True, db_default="")
    destination = models.CharField(max_length=100, null=True, db_default="")
    # Unix epoch milliseconds, from the config: `time` and `created` are whole seconds (acc
    # cuts them to the second), too coarse for the CDR's times. The INVITE's arrival, and the
    # first 200 OK's (NULL for a call not answered); NULL in rows of a config before them.
    setup_ms = models.BigIntegerField(null=True, db_default=None)
    answer_ms = models.BigIntegerField(null=True, db_default=None)
    # The first 18x or 200 on any route (post-dial delay = ring_ms - setup_ms); NULL when the
    # call got neither.
    ring_ms = models.BigIntegerField(null=True, db_default=None)

    class Meta:
        abstract = True


class Acc(AccountingRow):
    """acc: a call's final outcome (answered CDR or failed transaction), until ingested."""

    duration = models.PositiveIntegerField(db_default=0)
    ms_duration = models.PositiveIntegerField(db_default=0)

    class Meta:
        db_table = "acc"
        indexes = [models.Index(fields=["callid"], name="acc_callid_idx")]

    def __str__(self) -> str:
        return f"{self.callid} {self.sip_code}"


class MissedCall(AccountingRow):
    """missed_calls: one failed branch (a supplier attempt), until ingested."""

    class Meta:
        db_table = "missed_calls"
        indexes = [models.Index(fields=["callid"], name="missed_calls_callid_idx")]

    def __str__(self) -> str:
        return f"{self.callid} {self.sip_code}"


class Dialog(models.Model):
    """dialog: the schema of each node's table of live calls (`dialog_<node id>`).

    No node uses this table itself: a node's OpenSIPS keeps its dialogs in a table of its
    own (apps.opensips.dialogs), made LIKE this one, and loads it when it starts, so that
    its live calls survive a restart. One shared table would have every node load, time
    out and end every other node's calls.
    """

    dlg_id = models.PositiveBigIntegerField(primary_key=True)
    callid = FixedCharField(max_length=255)
    from_uri = FixedCharField(max_length=255)
    from_tag = FixedCharField(max_length=64)
    to_uri = FixedCharField(max_length=255)
    to_tag = FixedCharField(max_length=64)
    mangled_from_uri = FixedCharField(max_length=255, null=True, db_default=None)
    mangled_to_uri = FixedCharField(max_length=255, null=True, db_default=None)
    caller_cseq = FixedCharField(max_length=11)
    callee_cseq = FixedCharField(max_length=11)
    caller_ping_cseq = models.PositiveIntegerField()
    callee_ping_cseq = models.PositiveIntegerField()
    caller_route_set = PlainTextField(null=True)
    callee_route_set = PlainTextField(null=True)
    caller_contact = FixedCharField(max_length=255, null=True)
    callee_contact = FixedCharField(max_length=255, null=True)
    caller_sock = FixedCharField(max_length=64)
    callee_sock = FixedCharField(max_length=64)
    state = models.PositiveIntegerField()
    start_time = models.PositiveIntegerField()
    timeout = models.PositiveIntegerField()
    vars = PlainBlobField(null=True, db_default=None)
    profiles = PlainTextField(null=True, db_default=None)
    script_flags = FixedCharField(max_length=255, null=True, db_default=None)
    module_flags = models.PositiveIntegerField(db_default=0)
    flags = models.PositiveIntegerField(db_default=0)
    rt_on_answer = FixedCharField(max_length=64, null=True, db_default=None)
    rt_on_timeout = FixedCharField(max_length=64, null=True, db_default=None)
    rt_on_hangup = FixedCharField(max_length=64, null=True, db_default=None)

    class Meta:
        db_table = "dialog"

    def __str__(self) -> str:
        return self.callid
