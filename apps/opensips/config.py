"""A node's opensips.cfg, rendered from the database (template: deploy/opensips/opensips.cfg).

The file carries the node's call-control secret: `render_node_config` writes it 0640.
"""

from pathlib import Path
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.management.base import CommandError
from django.template import Context, Engine

from apps.nodes.models import ClusterSettings, Node
from apps.opensips import dialogs
from engines.opensips.install_layout import ModulesNotFound
from engines.opensips.install_layout import modules_dir as find_modules_dir

TEMPLATE_DIR = Path(settings.BASE_DIR) / "deploy" / "opensips"

# The OpenSIPS cluster in which shared-IP nodes share the "vip" tag (keepalived flips it), and
# the port of the clusterer's BIN protocol between management addresses.
CLUSTER_ID = 1
CLUSTER_BIN_PORT = 5566
# Nodes of ours one call may pass through before it is taken for a loop (482).
MAX_HOPS = 3


class RenderError(CommandError):
    """The node's OpenSIPS configuration cannot be rendered from these settings."""


def database_url() -> str:
    """The db_url OpenSIPS's modules use: OPENSIPS_DB_URL, else the product's MariaDB database."""
    if settings.OPENSIPS_DB_URL:
        return settings.OPENSIPS_DB_URL
    return mysql_url(settings.DATABASES["default"])


def mysql_url(database: dict) -> str:
    """The mysql:// URL of a Django DATABASES entry; RenderError for another engine."""
    if database["ENGINE"] != "django.db.backends.mysql":
        raise RenderError(
            "OpenSIPS reads its tables (address, subscriber, location, acc…) from the product's "
            f"database, which must be MariaDB/MySQL; DATABASE_URL uses {database['ENGINE']}. "
            "Use a mysql:// DATABASE_URL or set OPENSIPS_DB_URL."
        )
    user = quote(database.get("USER") or "", safe="")
    password = quote(str(database.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if password else f"{user}@"
    host = database.get("HOST") or "localhost"
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return f"mysql://{credentials}{host}{port}/{database['NAME']}"


def modules_dir() -> str:
    """The cfg's `mpath`: OPENSIPS_MODULES_DIR, else the modules of the node's OpenSIPS
    (OPENSIPS_BIN or `opensips` on PATH) or of the distribution's package.

    Never empty: OpenSIPS has no usable built-in module path (engines.opensips.install_layout).
    """
    try:
        return find_modules_dir(settings.OPENSIPS_MODULES_DIR, binary=settings.OPENSIPS_BIN)
    except ModulesNotFound as error:
        raise RenderError(str(error)) from None


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def mi_socket(node: Node) -> tuple[str, int, str]:
    """(address, port, path) of the node's MI, as OPENSIPS_MI_URL says the product reaches it."""
    url = urlsplit(settings.OPENSIPS_MI_URL.format(address=_host(node.management_address)))
    port = url.port or (443 if url.scheme == "https" else 80)
    return node.management_address, port, url.path.strip("/") or "mi"


def context(node: Node, cluster: ClusterSettings) -> dict:
    """Everything the template needs, checked."""
    shared = cluster.origination_mode == ClusterSettings.OriginationMode.SHARED
    if shared and not cluster.shared_ip:
        raise RenderError("Shared-IP origination needs the cluster's shared IP (admin: Cluster settings).")
    if not settings.CALL_CONTROL_URL.startswith(("http://", "https://")):
        raise RenderError(f"CALL_CONTROL_URL={settings.CALL_CONTROL_URL!r} must be an http(s):// URL.")
    mi_address, mi_port, mi_root = mi_socket(node)
    if shared:
        listen, advertise = cluster.shared_ip, ""
    else:
        listen = cluster.bind_address or "0.0.0.0"  # noqa: S104
        advertise = node.sip_address
    neighbours = [
        {"id": other.pk, "address": _host(other.management_address)}
        for other in Node.objects.enabled().exclude(pk=node.pk)
    ]
    return {
        "node": node,
        "node_id": node.pk,
        "shared": shared,
        "listen": _host(listen),
        "advertise": _host(advertise) if advertise else "",
        # Dedicated IP on a wider listening address: calls are sent from the node's own one.
        "force_socket": bool(advertise) and listen != advertise,
        # Automatic load balancing: calls to the shared IP are redirected (call control).
        "distributor": _host(cluster.shared_ip) if cluster.distribute_shared_ip and not shared else "",
        "ringing_timeout": settings.OPENSIPS_RINGING_TIMEOUT,
        "max_hops": MAX_HOPS,
        "port": node.sip_port,
        "mi_address": mi_address,
        "mi_port": mi_port,
        "mi_root": mi_root,
        "db_url": database_url(),
        "call_control_url": settings.CALL_CONTROL_URL.rstrip("/"),
        "secret": node.call_control_secret,
        # The `address` group of sources banned for SIP brute force (apps.fraud.bruteforce).
        "ban_group": settings.OPENSIPS_BAN_GROUP,
        "modules_dir": modules_dir(),
        "max_call_duration": cluster.max_call_duration,
        "ack_timeout": settings.OPENSIPS_ACK_TIMEOUT,
        "call_control_queue": settings.OPENSIPS_CALL_CONTROL_QUEUE,
        "ping_interval": settings.OPENSIPS_PING_INTERVAL,
        "dialog_table": dialogs.table_name(node.pk),
        "dialog_flush": settings.OPENSIPS_DIALOG_FLUSH,
        "open_files": settings.OPENSIPS_OPEN_FILES,
        "cluster_id": CLUSTER_ID,
        "bin_address": _host(node.management_address),
        "bin_port": CLUSTER_BIN_PORT,
        "neighbours": neighbours,
        "capture": {
            "socket": f"{_host(node.management_address)}:{settings.OPENSIPS_HEP_PORT}",
            "listener": f"{_host(settings.CAPTURE_HEP_ADDRESS)}:{settings.CAPTURE_HEP_PORT}",
        }
        if settings.OPENSIPS_HEP_PORT
        else None,
        "media": _media(node, advertise if advertise and listen != advertise else "")
        if node.media_enabled
        else None,
    }


# Seconds OpenSIPS lets FreeSWITCH's hunt take before it gives up on the first leg (each leg
# is bounded by FreeSWITCH: its setup and ringing timeouts).
MEDIA_INVITE_TIMEOUT = 300


def _media(node: Node, forced: str) -> dict:
    """Where this node's FreeSWITCH takes the calls that need media (docs/MEDIA.md)."""
    return {
        "address": node.sip_address,  # as $si shows it
        "host": _host(node.sip_address),
        "port": node.media_port,
        # Its second leg leaves from the socket a direct call is made to (dedicated IP).
        "socket": f"udp:{_host(forced)}:{node.sip_port}" if forced else "",
        "timeout": settings.OPENSIPS_MEDIA_TIMEOUT,
        # The whole hunt FreeSWITCH makes through the legs call control listed.
        "invite_timeout": MEDIA_INVITE_TIMEOUT,
    }


def render(node: Node, cluster: ClusterSettings) -> dict[str, str]:
    """`node`'s opensips.cfg under `cluster`'s origination mode."""
    engine = Engine(dirs=[str(TEMPLATE_DIR)], autoescape=False)
    text = engine.get_template("opensips.cfg").render(Context(context(node, cluster)))
    return {"opensips/opensips.cfg": text}
