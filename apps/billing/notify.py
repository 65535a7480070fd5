"""E-mails about money: the low-balance warning, sent by the node's worker."""

import logging

from django.conf import settings
from django.core.mail import send_mail

from apps.billing.models import Account

logger = logging.getLogger(__name__)


def queue_low_balance_warning(account_id: int) -> None:
    from django_q.tasks import async_task

    async_task("apps.billing.notify.send_low_balance_warning", account_id, cluster=settings.NODE_NAME)


def recipient(account: Account) -> str:
    """The account's own billing address, else its reseller's, else nobody."""
    reseller = account.peer.reseller if account.peer_id else account.reseller
    return account.notification_email or (reseller.email if reseller else "")


def send_low_balance_warning(account_id: int) -> bool:
    """Tell the customer its balance fell below its threshold; False when there is nobody to tell."""
    account = Account.objects.select_related("peer__reseller", "reseller").get(pk=account_id)
    holder = account.peer or account.reseller
    to = recipient(account)
    if not to:
        logger.warning(
            "account %s fell below its low-balance threshold; it has no e-mail address", account_id
        )
        return False
    subject = f"Low balance: {holder.name} has {account.balance:.2f} {account.currency} left"
    body = (
        f"The balance of {holder.name} is {account.balance} {account.currency}, below the "
        f"warning threshold of {account.low_balance_threshold} {account.currency}.\n\n"
    )
    if account.mode == Account.Mode.PREPAID:
        body += "New calls are refused once nothing is left to pay for them; top up to keep calling.\n"
    else:
        body += f"Calls go on until the credit limit of {account.credit_limit} {account.currency} is used.\n"
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [to])
    logger.info("low-balance warning for account %s sent to %s", account_id, to)
    return True
