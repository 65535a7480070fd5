from django.apps import AppConfig


class DidsConfig(AppConfig):
    name = "apps.dids"
    verbose_name = "DIDs"
