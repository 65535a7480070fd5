from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "apps.nodes"
    verbose_name = "Cluster nodes"
