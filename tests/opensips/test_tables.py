"""The OpenSIPS tables have OpenSIPS 3.6's schema, plus our documented acc columns.

On MariaDB the migrated tables' information_schema columns are compared with a checked-in
copy of what OpenSIPS 3.6's scripts/mysql/*-create.sql create; where those scripts are
on this machine they are loaded into a scratch database and must produce that same copy.
"""

import os
import re
import shutil
from pathlib import Path

import pytest
from django.db import connection

from apps.opensips.models import TABLE_VERSIONS, Version

SCRIPTS = ("standard", "permissions", "auth_db", "drouting", "registrant", "usrloc", "acc", "dialog")
TABLES = ("version", *TABLE_VERSIONS)

# (column type without display width, nullable, default) as MariaDB reports them for the
# tables OpenSIPS 3.6's create scripts make.
SCRIPT_COLUMNS = {
    "acc": {
        "id": ("int unsigned", False, None),
        "method": ("char(16)", False, "''"),
        "from_tag": ("char(64)", False, "''"),
        "to_tag": ("char(64)", False, "''"),
        "callid": ("char(64)", False, "''"),
        "sip_code": ("char(3)", False, "''"),
        "sip_reason": ("char(32)", False, "''"),
        "time": ("datetime", False, None),
        "duration": ("int unsigned", False, "0"),
        "ms_duration": ("int unsigned", False, "0"),
        "setuptime": ("int unsigned", False, "0"),
        "created": ("datetime", True, "NULL"),
    },
    "address": {
        "id": ("int unsigned", False, None),
        "grp": ("smallint unsigned", False, "0"),
        "ip": ("char(50)", False, None),
        "mask": ("smallint unsigned", False, "32"),
        "port": ("smallint unsigned", False, "0"),
        "proto": ("char(4)", False, "'any'"),
        "pattern": ("char(64)", True, "NULL"),
        "context_info": ("char(32)", True, "NULL"),
    },
    "dialog": {
        "dlg_id": ("bigint unsigned", False, None),
        "callid": ("char(255)", False, None),
        "from_uri": ("char(255)", False, None),
        "from_tag": ("char(64)", False, None),
        "to_uri": ("char(255)", False, None),
        "to_tag": ("char(64)", False, None),
        "mangled_from_uri": ("char(255)", True, "NULL"),
        "mangled_to_uri": ("char(255)", True, "NULL"),
        "caller_cseq": ("char(11)", False, None),
        "callee_cseq": ("char(11)", False, None),
        "caller_ping_cseq": ("int unsigned", False, None),
        "callee_ping_cseq": ("int unsigned", False, None),
        "caller_route_set": ("text", True, "NULL"),
        "callee_route_set": ("text", True, "NULL"),
        "caller_contact": ("char(255)", True, "NULL"),
        "callee_contact": ("char(255)", True, "NULL"),
        "caller_sock": ("char(64)", False, None),
        "callee_sock": ("char(64)", False, None),
        "state": ("int unsigned", False, None),
        "start_time": ("int unsigned", False, None),
        "timeout": ("int unsigned", False, None),
        "vars": ("blob", True, "NULL"),
        "profiles": ("text", True, "NULL"),
        "script_flags": ("char(255)", True, "NULL"),
        "module_flags": ("int unsigned", False, "0"),
        "flags": ("int unsigned", False, "0"),
        "rt_on_answer": ("char(64)", True, "NULL"),
        "rt_on_timeout": ("char(64)", True, "NULL"),
        "rt_on_hangup": ("char(64)", True, "NULL"),
    },
    "dr_carriers": {
        "id": ("int unsigned", False, None),
        "carrierid": ("char(64)", False, None),
        "gwlist": ("char(255)", False, None),
        "flags": ("int unsigned", False, "0"),
        "sort_alg": ("char(1)", False, "'N'"),
        "state": ("int unsigned", False, "0"),
        "attrs": ("char(255)", True, "NULL"),
        "description": ("char(128)", True, "NULL"),
    },
    "dr_gateways": {
        "id": ("int unsigned", False, None),
        "gwid": ("char(64)", False, None),
        "type": ("int unsigned", False, "0"),
        "address": ("char(128)", False, None),
        "strip": ("int unsigned", False, "0"),
        "pri_prefix": ("char(16)", True, "NULL"),
        "attrs": ("char(255)", True, "NULL"),
        "probe_mode": ("int unsigned", False, "0"),
        "state": ("int unsigned", False, "0"),
        "socket": ("char(128)", True, "NULL"),
        "description": ("char(128)", True, "NULL"),
    },
    "dr_groups": {
        "id": ("int unsigned", False, None),
        "username": ("char(64)", False, None),
        "domain": ("char(128)", True, "NULL"),
        "groupid": ("int unsigned", False, "0"),
        "description": ("char(128)", True, "NULL"),
    },
    "dr_rules": {
        "ruleid": ("int unsigned", False, None),
        "groupid": ("char(255)", False, None),
        "prefix": ("char(64)", False, None),
        "timerec": ("char(255)", True, "NULL"),
        "priority": ("int", False, "0"),
        "routeid": ("char(255)", True, "NULL"),
        "gwlist": ("char(255)", True, "NULL"),
        "sort_alg": ("char(1)", False, "'N'"),
        "sort_profile": ("int unsigned", True, "NULL"),
        "attrs": ("char(255)", True, "NULL"),
        "description": ("char(128)", True, "NULL"),
    },
    "location": {
        "contact_id": ("bigint unsigned", False, None),
        "username": ("char(64)", False, "''"),
        "domain": ("char(64)", True, "NULL"),
        "contact": ("text", False, None),
        "received": ("char(255)", True, "NULL"),
        "path": ("char(255)", True, "NULL"),
        "expires": ("int unsigned", False, None),
        "q": ("float(10,2)", False, "1.00"),
        "callid": ("char(255)", False, "'Default-Call-ID'"),
        "cseq": ("int", False, "13"),
        "last_modified": ("datetime", False, "'1900-01-01 00:00:01'"),
        "flags": ("int", False, "0"),
        "cflags": ("char(255)", True, "NULL"),
        "user_agent": ("char(255)", False, "''"),
        "socket": ("char(64)", True, "NULL"),
        "methods": ("int", True, "NULL"),
        "sip_instance": ("char(255)", True, "NULL"),
        "kv_store": ("text", True, "NULL"),
        "attr": ("char(255)", True, "NULL"),
    },
    "missed_calls": {
        "id": ("int unsigned", False, None),
        "method": ("char(16)", False, "''"),
        "from_tag": ("char(64)", False, "''"),
        "to_tag": ("char(64)", False, "''"),
        "callid": ("char(64)", False, "''"),
        "sip_code": ("char(3)", False, "''"),
        "sip_reason": ("char(32)", False, "''"),
        "time": ("datetime", False, None),
        "setuptime": ("int unsigned", False, "0"),
        "created": ("datetime", True, "NULL"),
    },
    "registrant": {
        "id": ("int unsigned", False, None),
        "registrar": ("char(255)", False, "''"),
        "proxy": ("char(255)", True, "NULL"),
        "aor": ("char(255)", False, "''"),
        "third_party_registrant": ("char(255)", True, "NULL"),
        "username": ("char(64)", True, "NULL"),
        "password": ("char(64)", True, "NULL"),
        "binding_URI": ("char(255)", False, "''"),
        "binding_params": ("char(64)", True, "NULL"),
        "expiry": ("int unsigned", True, "NULL"),
        "forced_socket": ("char(64)", True, "NULL"),
        "cluster_shtag": ("char(64)", True, "NULL"),
        "state": ("int", False, "0"),
    },
    "subscriber": {
        "id": ("int unsigned", False, None),
        "username": ("char(64)", False, "''"),
        "domain": ("char(64)", False, "''"),
        "password": ("char(25)", False, "''"),
        "ha1": ("char(64)", False, "''"),
        "ha1_sha256": ("char(64)", False, "''"),
        "ha1_sha512t256": ("char(64)", False, "''"),
    },
    "version": {
        "table_name": ("char(32)", False, None),
        "table_version": ("int unsigned", False, "0"),
    },
}

# Ours: the columns the rendered config fills through acc's extra_fields, and to_tag
# nullable (OpenSIPS writes NULL for replies it generates itself).
OUR_ACCOUNTING_COLUMNS = {
    "to_tag": ("char(64)", True, "''"),
    "peer_id": ("int", True, "NULL"),
    "node": ("varchar(31)", True, "''"),
    "reservation_id": ("bigint", True, "NULL"),
    "supplier_id": ("int", True, "NULL"),
    "gateway_id": ("int", True, "NULL"),
    "source_ip": ("varchar(64)", True, "''"),
    "caller": ("varchar(64)", True, "''"),
    "callee": ("varchar(64)", True, "''"),
    "callee_out": ("varchar(64)", True, "''"),
    "destination": ("varchar(100)", True, "''"),
    "setup_ms": ("bigint", True, "NULL"),
    "answer_ms": ("bigint", True, "NULL"),
    "ring_ms": ("bigint", True, "NULL"),
}


def expected_columns() -> dict[str, dict[str, tuple]]:
    expected = {table: dict(columns) for table, columns in SCRIPT_COLUMNS.items()}
    for table in ("acc", "missed_calls"):
        expected[table].update(OUR_ACCOUNTING_COLUMNS)
    return expected


def schema_dir() -> Path | None:
    """OpenSIPS's MySQL create scripts: OPENSIPS_SCHEMA_DIR, else where the binary's source tree
    (scripts/mysql), its install prefix (share/opensips/mysql) or the packages put them."""
    if os.environ.get("OPENSIPS_SCHEMA_DIR"):
        return Path(os.environ["OPENSIPS_SCHEMA_DIR"])
    binary = os.environ.get("OPENSIPS_BIN") or shutil.which("opensips")
    candidates = []
    if binary:
        here = Path(binary).resolve().parent
        candidates += [here / "scripts" / "mysql", here.parent / "share" / "opensips" / "mysql"]
    candidates.append(Path("/usr/share/opensips/mysql"))  # Debian's opensips-mysql-module
    return next((path for path in candidates if (path / "acc-create.sql").exists()), None)


def columns_of(schema: str) -> dict[str, dict[str, tuple]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, column_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = %s AND table_name IN %s",
            [schema, TABLES],
        )
        found: dict[str, dict[str, tuple]] = {}
        for table, column, kind, nullable, default in cursor.fetchall():
            # Display widths (INT(11)) mean nothing to the server or to OpenSIPS.
            kind = re.sub(r"int\(\d+\)", "int", kind)
            found.setdefault(table, {})[column] = (kind, nullable == "YES", default)
    return found


mariadb_only = pytest.mark.skipif(
    connection.vendor != "mysql", reason="information_schema types are checked on MariaDB"
)


@mariadb_only
@pytest.mark.django_db
def test_migrated_tables_have_opensips_schema_and_our_columns():
    found = columns_of(connection.settings_dict["NAME"])
    expected = expected_columns()
    assert set(found) == set(expected)
    for table, columns in expected.items():
        assert found[table] == columns, table


@mariadb_only
@pytest.mark.django_db(transaction=True)
def test_checked_in_schema_matches_opensips_create_scripts():
    scripts = schema_dir()
    if scripts is None:
        pytest.skip("OpenSIPS's scripts/mysql not found (set OPENSIPS_SCHEMA_DIR or OPENSIPS_BIN)")
    scratch = f"{connection.settings_dict['NAME']}_osref"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{scratch}`")
        cursor.execute(f"CREATE DATABASE `{scratch}`")
        try:
            cursor.execute(f"USE `{scratch}`")
            for name in SCRIPTS:
                text = (scripts / f"{name}-create.sql").read_text()
                for statement in filter(str.strip, text.split(";")):
                    cursor.execute(statement)
            cursor.execute("SELECT table_name, table_version FROM version")
            versions = dict(cursor.fetchall())
        finally:
            cursor.execute(f"USE `{connection.settings_dict['NAME']}`")
    try:
        found = columns_of(scratch)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE `{scratch}`")
    assert found == SCRIPT_COLUMNS
    assert {table: versions[table] for table in TABLE_VERSIONS} == TABLE_VERSIONS


@pytest.mark.django_db
def test_every_table_has_the_script_columns_and_nullability():
    # Every backend: the same column names and NULL-ness (types are MariaDB's business).
    expected = expected_columns()
    with connection.cursor() as cursor:
        for table, columns in expected.items():
            description = connection.introspection.get_table_description(cursor, table)
            assert {c.name.lower(): bool(c.null_ok) for c in description} == {
                name.lower(): nullable for name, (_, nullable, _) in columns.items()
            }, table


@pytest.mark.django_db
def test_version_rows_are_what_opensips_checks():
    assert dict(Version.objects.values_list("table_name", "table_version")) == TABLE_VERSIONS
