from django.apps import AppConfig


class FraudConfig(AppConfig):
    name = "apps.fraud"
    verbose_name = "Fraud and quality control"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from apps.fraud import login

        # Failed admin and portal logins are counted for the lockout (apps.fraud.login).
        user_login_failed.connect(login.login_failed, dispatch_uid="apps.fraud.login_failed")
