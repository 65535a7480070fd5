from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CallControlConfig(AppConfig):
    name = "apps.callcontrol"
    verbose_name = "Call control"

    def ready(self) -> None:
        from django.apps import apps

        from apps.callcontrol.tasks import ensure_schedules

        # This app has no models, so no post_migrate of its own: hook django_q's, which
        # also guarantees the schedule table exists.
        post_migrate.connect(
            ensure_schedules, sender=apps.get_app_config("django_q"), dispatch_uid="callcontrol-schedules"
        )
