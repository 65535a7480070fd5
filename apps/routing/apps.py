from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "apps.routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        from apps.routing import signals  # noqa: F401  (registers the change watchers)
