from django.apps import AppConfig


class FilesConfig(AppConfig):
    # Periodic tasks: SCHEDULES in tasks.py, ensured per node by apps.cluster after migrate.
    name = "apps.files"
    verbose_name = "Recordings and captures"
