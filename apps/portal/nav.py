"""The portal's sections: the modules of apps.portal.views, and the main menu in order."""

from django.utils.translation import gettext_lazy as _

# Modules of apps.portal.views whose `urlpatterns` make the portal.
SECTIONS = (
    "overview",
    "calls",
    "live",
    "money",
    "invoices",
    "bundles",
    "prices",
    "numbers",
    "connectivity",
    "usage",
    "account",
    "session",
)

# (nav key, URL name, label): the main menu. A page sets `nav` in its context to its key.
MENU = (
    ("dashboard", "portal:dashboard", _("Overview")),
    ("cdrs", "portal:cdrs", _("Calls")),
    ("live", "portal:live", _("Live calls")),
    ("usage", "portal:usage", _("Usage")),
    ("money", "portal:money", _("Money")),
    ("invoices", "portal:invoices", _("Invoices")),
    ("bundles", "portal:bundles", _("Bundles")),
    ("prices", "portal:prices", _("Prices")),
    ("numbers", "portal:numbers", _("Numbers")),
    ("connectivity", "portal:connectivity", _("Connectivity")),
    ("account", "portal:account", _("Account")),
)
