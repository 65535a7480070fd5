"""A node's FreeSWITCH configuration, rendered from the database (templates: templates/freeswitch).

Static XML, not mod_xml_curl: a call through FreeSWITCH must not depend on the web process
being up (docs/MEDIA.md). A change is applied with ESL `reloadxml` (dialplan, ACLs) or a
profile restart (`sofia profile smartswitch restart`: ports and addresses).

The directory holds the node's ESL password: `render_node_config` writes it 0640.
"""

import ipaddress
from pathlib import Path

from django.conf import settings
from django.template import Context, Engine

from apps.nodes.models import ClusterSettings, Node
from apps.opensips.config import RenderError

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
OUT_DIR = "freeswitch"

# What the media path uses (deploy/freeswitch/README.md lists them for an install): no mod_xml_curl
# (it refuses to load without a binding), no mod_loopback or mod_hash (nothing uses them).
MODULES = (
    "mod_console",
    "mod_logfile",
    "mod_event_socket",
    "mod_sofia",
    "mod_commands",
    "mod_dptools",
    "mod_dialplan_xml",
    "mod_spandsp",  # G.722 and GSM
    "mod_opus",
    "mod_sndfile",  # WAV announcements and recordings
    "mod_native_file",
    "mod_tone_stream",
)
# Offered and accepted in this order; FreeSWITCH spells apps.peers.models.CODECS this way
# (its codec strings compare names without case).
CODECS = ("PCMU", "PCMA", "G722", "OPUS", "GSM")
CONFIG_FILES = (
    "modules.conf.xml",
    "switch.conf.xml",
    "acl.conf.xml",
    "console.conf.xml",
    "logfile.conf.xml",
    "event_socket.conf.xml",
    "opus.conf.xml",
    "sofia.conf.xml",
)
DIALPLAN_FILES = ("smartswitch.xml",)
LOG_LEVELS = ("debug", "info", "notice", "warning", "err", "crit", "alert")
# The B legs' answers after which FreeSWITCH tries no further leg of X-SS-Dial, as
# OpenSIPS's failure_route[hunt] stops at 486, 603 and every 4xx but 408: FreeSWITCH's
# causes for 486, 603/4xx rejections, 404, 480, 484, 410, 485, 488, 405, 406/415, 482/483,
# 413-423. (Causes are coarser than codes: 600, 604, 606, 608 and 501 share theirs with a
# 4xx and stop too, where OpenSIPS would go on.) 408 and 5xx go on to the next leg.
STOP_HUNTING_CAUSES = (
    "USER_BUSY",
    "CALL_REJECTED",
    "UNALLOCATED_NUMBER",
    "NO_USER_RESPONSE",
    "INVALID_NUMBER_FORMAT",
    "NUMBER_CHANGED",
    "NO_ROUTE_DESTINATION",
    "INCOMPATIBLE_DESTINATION",
    "SERVICE_UNAVAILABLE",
    "SERVICE_NOT_IMPLEMENTED",
    "EXCHANGE_ROUTING_ERROR",
    "INTERWORKING",
    "ORIGINATOR_CANCEL",
)
# One leg of X-SS-Dial: optional [variables], then a destination of this profile only (an
# IPv6 fs_path has brackets).
# No "$", "{" or "}": nothing in a header is ever expanded as a FreeSWITCH variable.
LEG_PATTERN = r"(\[[^\]{}\x24]*\])?sofia/smartswitch/[^|\s{}\x24]+"


def announcements_dir() -> Path:
    """Where this node keeps the announcement files FreeSWITCH plays (apps.media.announcements)."""
    return Path(getattr(settings, "ANNOUNCEMENTS_DIR", Path(settings.VAR_DIR) / "announcements"))


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _cidr(address: str) -> str:
    return str(ipaddress.ip_network(address))


def opensips_address(node: Node, cluster: ClusterSettings) -> str:
    """The address the node's OpenSIPS listens on and sends from: the shared IP in shared-IP
    origination (OpenSIPS binds only it there), else the node's SIP address."""
    if cluster.origination_mode == ClusterSettings.OriginationMode.SHARED:
        if not cluster.shared_ip:
            raise RenderError(
                "Shared-IP origination needs the cluster's shared IP (admin: Cluster settings)."
            )
        return cluster.shared_ip
    return node.sip_address


def esl_addresses(node: Node) -> list[str]:
    """Who may open this node's ESL: the management address of every enabled node and its own."""
    addresses = set(Node.objects.enabled().values_list("management_address", flat=True))
    addresses.add(node.management_address)
    return sorted(addresses, key=ipaddress.ip_address)


def _log_levels(level: str) -> str:
    if level not in LOG_LEVELS:
        raise RenderError(f"FREESWITCH_LOG_LEVEL={level!r}: use one of {', '.join(LOG_LEVELS)}.")
    return ",".join(LOG_LEVELS[LOG_LEVELS.index(level) :])


def _rtp_ports() -> tuple[int, int]:
    start = int(getattr(settings, "FREESWITCH_RTP_START_PORT", 16384))
    end = int(getattr(settings, "FREESWITCH_RTP_END_PORT", 32767))
    if not 1024 <= start < end <= 65535:
        raise RenderError(f"FreeSWITCH's RTP ports {start}-{end}: a range within 1024-65535.")
    return start, end


def context(node: Node, cluster: ClusterSettings) -> dict:
    """Everything the templates need, checked."""
    opensips = opensips_address(node, cluster)
    rtp_start, rtp_end = _rtp_ports()
    level = getattr(settings, "FREESWITCH_LOG_LEVEL", "info")
    return {
        "node": node,
        "recordings_dir": Path(settings.RECORDINGS_DIR),
        "announcements_dir": announcements_dir(),
        "codecs": ",".join(CODECS),
        "modules": MODULES,
        "config_files": CONFIG_FILES,
        "max_sessions": int(getattr(settings, "FREESWITCH_MAX_SESSIONS", 2000)),
        "sessions_per_second": int(getattr(settings, "FREESWITCH_SESSIONS_PER_SECOND", 200)),
        "rtp_start_port": rtp_start,
        "rtp_end_port": rtp_end,
        "log_level": level,
        "log_levels": _log_levels(level),
        # OpenSIPS may send from its own socket and from the node's SIP address.
        "opensips_cidrs": sorted({_cidr(opensips), _cidr(node.sip_address)}),
        "esl_cidrs": [_cidr(address) for address in esl_addresses(node)],
        "opensips_hostport": f"{_host(opensips)}:{node.sip_port}",
        # Longer than OpenSIPS hunting a few routes: OpenSIPS, not FreeSWITCH, gives up first.
        "answer_timeout": int(getattr(settings, "FREESWITCH_ANSWER_TIMEOUT", 300)),
        "stop_hunting": ",".join(STOP_HUNTING_CAUSES),
        "leg_pattern": LEG_PATTERN,
    }


def render(node: Node, cluster: ClusterSettings) -> dict[str, str]:
    """`node`'s FreeSWITCH configuration directory; nothing for a node that runs no FreeSWITCH."""
    if not node.media_enabled:
        return {}
    engine = Engine(dirs=[str(TEMPLATE_DIR)], autoescape=True)
    values = Context(context(node, cluster))
    names = [
        "freeswitch.xml",
        *(f"autoload_configs/{name}" for name in CONFIG_FILES),
        *(f"dialplan/{name}" for name in DIALPLAN_FILES),
    ]
    return {f"{OUT_DIR}/{name}": engine.get_template(f"freeswitch/{name}").render(values) for name in names}
