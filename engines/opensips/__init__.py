"""OpenSIPS: the management interface (MI) client; configuration rendering and table contracts."""

from engines.opensips.mi import RELOAD_COMMANDS, DialogEnd, MIClient, MIError, MIUnavailable, url_for
from engines.opensips.state import Contact, Dialog, DialogState, GatewayStatus, Registrant, Uptime

__all__ = [
    "RELOAD_COMMANDS",
    "Contact",
    "Dialog",
    "DialogEnd",
    "DialogState",
    "GatewayStatus",
    "MIClient",
    "MIError",
    "MIUnavailable",
    "Registrant",
    "Uptime",
    "url_for",
]
