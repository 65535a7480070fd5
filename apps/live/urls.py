"""Placeholder until the live pages are built (issue 17)."""

app_name = "live"

urlpatterns: list = []
