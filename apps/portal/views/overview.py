"""Overview: the customer's money at a glance and its latest calls."""

from django.shortcuts import render
from django.urls import path
from django.views.decorators.cache import never_cache

from apps.billing.spending import spent
from apps.core.money import MAX_CREDIT_LIMIT, amount_in_range, balance_in_range
from apps.portal.views.calls import latest_calls
from apps.portal.views.common import context, customer, customer_required
from apps.tenancy.scope import Scope


@never_cache
@customer_required
def dashboard(request, scope: Scope):
    """The customer's money at a glance and its latest calls."""
    peer = customer(scope)
    page = context(peer, nav="dashboard", page_obj=latest_calls(scope))
    account = page["account"]
    page["low_balance"] = bool(
        account
        and account.low_balance_threshold is not None
        and account.balance < account.low_balance_threshold
    )
    # Spend limits (docs/FRAUD.md): what was spent today and this month on the customer's
    # clock against its limits, and the dearest price per minute it may call at.
    page["spent"] = spent(account) if account else None
    # A balance past the product's bounds can only have been written around its services
    # (an older version's bug): it is shown as stored, and said to be wrong.
    page["money_out_of_range"] = bool(
        account
        and not (
            balance_in_range(account.balance) and amount_in_range(account.credit_limit, MAX_CREDIT_LIMIT)
        )
    )
    return render(request, "portal/dashboard.html", page)


urlpatterns = [path("", dashboard, name="dashboard")]
