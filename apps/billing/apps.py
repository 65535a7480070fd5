from django.apps import AppConfig


class BillingConfig(AppConfig):
    # Periodic tasks: SCHEDULES in tasks.py, ensured per node by apps.cluster after migrate.
    name = "apps.billing"
    verbose_name = "Billing"
