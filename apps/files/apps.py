from django.apps import AppConfig
from django.db.models.signals import post_migrate


class FilesConfig(AppConfig):
    name = "apps.files"
    verbose_name = "Recordings and captures"

    def ready(self) -> None:
        from django.apps import apps

        from apps.files.tasks import ensure_schedules

        # After django_q's own migrate, so that its schedule table exists.
        post_migrate.connect(
            ensure_schedules, sender=apps.get_app_config("django_q"), dispatch_uid="files-schedules"
        )
