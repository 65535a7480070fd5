"""The write paths of billing: every module here changes money or what it is computed from.

ledger         accounts, postings and the balance cache; payments, refunds, adjustments
rating         the rater: prices CDRs and charges them (the billing loop's rate_batch)
rerating       re-pricing of rated calls after a price change, with its differences
fees           recurring fees
reservations   money call control holds for live calls
online         online billing: ends calls that overrun what their customer can pay

The ledger's verbs are re-exported here, so `from apps.billing import services as billing;
billing.post(...)` reads as before.
"""

from apps.billing.services.ledger import (
    ACCOUNT_SETTINGS,
    Posting,
    ledger_differences,
    open_account,
    post,
    post_adjustment,
    post_payment,
    post_refund,
    update_account,
)

__all__ = [
    "ACCOUNT_SETTINGS",
    "Posting",
    "ledger_differences",
    "open_account",
    "post",
    "post_adjustment",
    "post_payment",
    "post_refund",
    "update_account",
]
