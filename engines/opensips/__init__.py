"""OpenSIPS: the management interface (MI) client; where its modules are; configuration
rendering and table contracts."""

from engines.opensips.install_layout import ModulesNotFound, find_binary, find_modules_dir, modules_dir
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
    "ModulesNotFound",
    "Registrant",
    "Uptime",
    "find_binary",
    "find_modules_dir",
    "modules_dir",
    "url_for",
]
