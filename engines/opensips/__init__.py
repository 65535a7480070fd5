"""OpenSIPS: the management interface (MI) client; configuration rendering and table contracts."""

from engines.opensips.mi import DialogEnd, MIClient, MIError, MIUnavailable, url_for

__all__ = ["DialogEnd", "MIClient", "MIError", "MIUnavailable", "url_for"]
