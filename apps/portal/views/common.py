"""The customer self-care portal: one customer's account and calls, nothing of anyone else's.

Views only read, or change through an app's service. What a customer sees is decided by the
querysets' `visible_to(scope)`, never in a view or a template. Each section of the portal is
a module of this package with its own `urlpatterns` (apps.portal.urls joins them); this one
holds what they share.
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render

from apps.peers.models import Peer
from apps.tenancy.scope import Scope, access, request_scope


def customer_required(view):
    """Pass customers their scope; send the anonymous to sign in and staff to the admin."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        scope = request_scope(request)
        if not scope.is_customer:
            return render(request, "portal/customers_only.html", status=403)
        return view(request, scope, *args, **kwargs)

    return wrapper


def customer(scope: Scope) -> Peer:
    return access(Peer.objects.select_related("account"), scope, scope.peer_id)


def context(peer: Peer, **extra) -> dict:
    account = getattr(peer, "account", None)  # a reverse one-to-one raises AttributeError when absent
    return {
        "peer": peer,
        "account": account,
        "currency": account.currency if account else "",
        **extra,
    }
