from django.apps import AppConfig


class CallControlConfig(AppConfig):
    # Periodic tasks: SCHEDULES in tasks.py, ensured per node by apps.cluster after migrate.
    name = "apps.callcontrol"
    verbose_name = "Call control"
