"""Placeholder until its section is built (issue 17)."""

urlpatterns: list = []
