"""Placeholder until the reports pages are built (issue 17)."""

app_name = "reports"

urlpatterns: list = []
