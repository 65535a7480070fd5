"""What a node's OpenSIPS says about itself right now, for the node's admin page."""

from dataclasses import dataclass, field

from django.conf import settings

from apps.nodes.models import Node
from apps.nodes.sync import client_for
from engines.opensips import Contact, Dialog, MIError, MIUnavailable, Registrant, Uptime

# Counters shown on the node page, by group ("usrloc:" is empty without usrloc).
# "script": the rendered cfg's own counters (call_control_failed).
STATISTICS = ("dialog:", "core:", "tm:", "usrloc:", "script:")
# The admin page asks several questions: each gets at most this long, and the first one
# unanswered stops the rest, so a dead node costs the page one timeout.
PAGE_TIMEOUT = 1.0
CALLS_SHOWN = 200


@dataclass
class EngineStatus:
    """The live state of one node's OpenSIPS, or why it could not be read."""

    node: str
    unreachable: str = ""  # "OpenSIPS on node1 did not answer: ..." when it did not
    # The node's worker said it has no OpenSIPS: it is not asked (apps.cluster.presence).
    not_installed: str = ""
    # The node has never beaten: no worker runs there yet (a node being set up, demo data),
    # so an engine that does not answer is no alarm.
    not_started: bool = False
    version: str = ""
    uptime: Uptime | None = None
    statistics: dict[str, dict[str, int]] = field(default_factory=dict)
    active_calls: int | None = None
    calls: list[Dialog] = field(default_factory=list)
    more_calls: bool = False
    registrations: list[Contact] = field(default_factory=list)
    registrants: list[Registrant] = field(default_factory=list)
    # Commands OpenSIPS refused (a module not loaded): "reg_list: -32601 Method not found".
    errors: list[str] = field(default_factory=list)


def _grouped(counters: dict[str, int]) -> dict[str, dict[str, int]]:
    groups: dict[str, dict[str, int]] = {}
    for name, value in counters.items():
        group, _, counter = name.partition(":")
        groups.setdefault(group, {})[counter] = value
    return groups


def engine_status(node: Node, *, timeout: float | None = None) -> EngineStatus:
    """Ask `node`'s OpenSIPS for its version, uptime, counters, calls and registrations."""
    from apps.nodes.sync import NOT_INSTALLED, opensips_missing

    status = EngineStatus(node.name, not_started=node.last_heartbeat is None)
    if opensips_missing(node):
        status.not_installed = NOT_INSTALLED
        return status
    timeout = min(timeout or PAGE_TIMEOUT, settings.OPENSIPS_MI_TIMEOUT)
    client = client_for(node, timeout=timeout)
    questions = (
        ("version", lambda: setattr(status, "version", client.version())),
        ("uptime", lambda: setattr(status, "uptime", client.uptime())),
        ("get_statistics", lambda: setattr(status, "statistics", _grouped(client.statistics(STATISTICS)))),
        ("dlg_list", lambda: setattr(status, "calls", client.dialogs(limit=CALLS_SHOWN))),
        ("ul_dump", lambda: setattr(status, "registrations", client.registrations())),
        ("reg_list", lambda: setattr(status, "registrants", client.registrants())),
    )
    for command, ask in questions:
        try:
            ask()
        except MIUnavailable as exc:
            status.unreachable = f"OpenSIPS on {node.name} did not answer: {exc}"
            return status
        except MIError as exc:
            status.errors.append(f"{command}: {exc.code} {exc.message}")
    status.calls = sorted(
        (call for call in status.calls if call.active),
        key=lambda call: call.started_at.timestamp() if call.started_at else 0,
    )
    status.active_calls = status.statistics.get("dialog", {}).get("active_dialogs", len(status.calls))
    status.more_calls = (status.active_calls or 0) > len(status.calls)
    return status
