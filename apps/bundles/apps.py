from django.apps import AppConfig


class BundlesConfig(AppConfig):
    # Periodic tasks: SCHEDULES in tasks.py, ensured per node by apps.cluster after migrate.
    name = "apps.bundles"
    verbose_name = "Bundles"
