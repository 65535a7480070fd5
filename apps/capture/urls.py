"""Capture pages: a call's pcap and its SIP ladder, for staff (admin) and customers (portal)."""

app_name = "capture"

urlpatterns: list = []
