from django.apps import AppConfig


class FraudConfig(AppConfig):
    name = "apps.fraud"
    verbose_name = "Fraud and quality control"
