"""The portal's URLs: each section's module brings its own `urlpatterns`."""

from importlib import import_module

from apps.portal.nav import SECTIONS

app_name = "portal"

urlpatterns = [
    pattern for module in SECTIONS for pattern in import_module(f"apps.portal.views.{module}").urlpatterns
]
