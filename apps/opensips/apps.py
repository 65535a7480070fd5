from django.apps import AppConfig


class OpensipsConfig(AppConfig):
    name = "apps.opensips"
    verbose_name = "OpenSIPS tables"
