"""Billing in the admin: money is read here and moved only by the billing services.

accounts         accounts, their money and live calls; payments, refunds, adjustments
ledger           the ledger, read only, by kind and date; CSV exports
rerate_runs      re-rating runs and what they changed
recurring_fees   customers' recurring fees
"""

from apps.billing.admin import accounts, ledger, recurring_fees, rerate_runs  # noqa: F401 - each registers its pages
