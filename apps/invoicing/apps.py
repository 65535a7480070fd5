from django.apps import AppConfig


class InvoicingConfig(AppConfig):
    # Periodic tasks: SCHEDULES in tasks.py, ensured per node by apps.cluster after migrate.
    name = "apps.invoicing"
    verbose_name = "Invoicing"
