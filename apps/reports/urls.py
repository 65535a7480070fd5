"""The reports, mounted at /admin/reports/ (admin pages: admin_view signs staff in)."""

from django.contrib import admin
from django.urls import path

from apps.reports.views import report_view

app_name = "reports"

urlpatterns = [
    path("", admin.site.admin_view(report_view), name="traffic"),
]
