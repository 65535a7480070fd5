from django.apps import AppConfig


class CdrConfig(AppConfig):
    name = "apps.cdr"
    verbose_name = "Call records"
