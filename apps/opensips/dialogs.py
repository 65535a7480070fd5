"""Each node's table of live calls: OpenSIPS keeps its dialogs there and loads them when it
starts, so that a restart loses no call (its BYE at the granted maximum, its CDR).

The table is `dialog_<node id>`, made LIKE the `dialog` table (apps.opensips.models.Dialog):
one per node, because a dialog module loads every row of its table and would otherwise end
the other nodes' calls too. The id, not the name: a node can be renamed, and OpenSIPS's
`version` table takes names of at most 32 characters.
"""

from django.db import connection

from apps.opensips.models import TABLE_VERSIONS, Version


def table_name(node_id: int) -> str:
    return f"dialog_{node_id}"


def ensure_table(node_id: int) -> bool:
    """Create node `node_id`'s dialog table and its `version` row if missing; False when the
    database is not MariaDB (OpenSIPS runs on MariaDB only: nothing to keep then).

    Data definition commits the open transaction on MariaDB: call it outside one.
    """
    if connection.vendor != "mysql":
        return False
    if connection.in_atomic_block:
        raise RuntimeError("ensure_table runs DDL, which would commit the caller's transaction")
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {quote(table_name(node_id))} LIKE {quote('dialog')}")
    Version.objects.update_or_create(
        table_name=table_name(node_id), defaults={"table_version": TABLE_VERSIONS["dialog"]}
    )
    return True
