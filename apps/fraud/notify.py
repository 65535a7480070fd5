"""E-mail about alerts: one message per episode, to the operator or the subject's reseller."""


def send_alert_email(alert_id: int) -> bool:
    """Send the alert's e-mail once (sets `emailed_at`); False when nobody is to be told."""
    raise NotImplementedError  # apps.fraud helper H1 writes it
