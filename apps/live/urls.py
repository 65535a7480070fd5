"""The live dashboard's admin pages, mounted at /admin/live/ (the socket is ws/live/, apps.live.routing)."""

from django.contrib import admin
from django.urls import path

from apps.live import views

app_name = "live"

urlpatterns = [path("", admin.site.admin_view(views.dashboard), name="dashboard")]
