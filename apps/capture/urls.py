"""Capture pages: a call's pcap and its SIP ladder, for staff (admin) and customers (portal)."""

from django.contrib import admin
from django.urls import path

from apps.capture import views

app_name = "capture"

urlpatterns = [
    path("admin/<int:pk>/ladder/", admin.site.admin_view(views.admin_ladder), name="admin-ladder"),
    path("admin/<int:pk>/pcap/", admin.site.admin_view(views.admin_pcap), name="admin-pcap"),
    path("portal/<int:pk>/ladder/", views.portal_ladder, name="portal-ladder"),
    path("portal/<int:pk>/pcap/", views.portal_pcap, name="portal-pcap"),
]
