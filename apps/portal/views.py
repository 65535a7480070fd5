"""The customer self-care portal: one customer's account and calls, nothing of anyone else's.

Views only read. What a customer sees is decided by the querysets' `visible_to(scope)`,
never in a view or a template; a change a customer may make goes through its app's service.
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Page, Paginator
from django.db.models import Prefetch, Q
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from apps.billing.spending import spent
from apps.cdr.models import Cdr
from apps.core.money import MAX_CREDIT_LIMIT, amount_in_range, balance_in_range
from apps.dids.models import Did, DidTarget
from apps.files.models import StoredFile
from apps.media import recordings
from apps.opensips.models import Location
from apps.peers.models import Peer
from apps.portal.forms import CdrFilterForm, CustomerLoginForm
from apps.tenancy.scope import Scope, access, request_scope

CDRS_PER_PAGE = 25
NUMBERS_PER_PAGE = 50

# The columns a customer is shown. Loading only these keeps the supplier side of a call
# (supplier, gateway, buy cost, the number as sent out) out of every template's reach; a
# template that reached for a deferred field would cost a query per row, which the
# query-count tests catch.
CUSTOMER_CDR_FIELDS = (
    "id",
    "caller",
    "callee",
    "created_at",
    "duration_ms",
    "sip_code",
    "sip_reason",
    "sell_cost",
    "rating_state",
)
# A call's own page adds when it was answered and ended, and what finds its files (its
# Call-ID, which the customer's phone chose, and its node, used and never shown).
CUSTOMER_CALL_FIELDS = (
    *CUSTOMER_CDR_FIELDS,
    "call_id",
    "answered_at",
    "ended_at",
    "billable_seconds",
    "node",
)

# A customer sees what it pays for a number and where its calls go; what the number costs
# its provider (supplier, buy prices) and the provider's notes stay out of every template.
CUSTOMER_DID_FIELDS = (
    "id",
    "number",
    "last_number",
    "hunting",
    "sell_monthly",
    "sell_per_minute",
    "min_seconds",
    "increment_seconds",
    "enabled",
)


class PortalLoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    authentication_form = CustomerLoginForm
    redirect_authenticated_user = True


class PortalLogoutView(auth_views.LogoutView):
    """Sign out (POST only, as Django requires) and say so on the sign-in page."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You have signed out.")
        return response


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


def _customer(scope: Scope) -> Peer:
    return access(Peer.objects.select_related("account"), scope, scope.peer_id)


def _cdr_page(request, scope: Scope, *, start=None, end=None) -> Page:
    cdrs = recordings.with_recording(
        Cdr.objects.visible_to(scope).between(start, end).only(*CUSTOMER_CDR_FIELDS)
    ).order_by("-created_at", "-id")
    # get_page() answers a page past the end with the last page and junk with the first.
    return Paginator(cdrs, CDRS_PER_PAGE).get_page(request.GET.get("page"))


def _context(peer: Peer, **extra) -> dict:
    account = getattr(peer, "account", None)  # a reverse one-to-one raises AttributeError when absent
    return {
        "peer": peer,
        "account": account,
        "currency": account.currency if account else "",
        **extra,
    }


@never_cache
@customer_required
def dashboard(request, scope: Scope):
    """The customer's money at a glance and its latest calls."""
    peer = _customer(scope)
    context = _context(peer, nav="dashboard", page_obj=_cdr_page(request, scope))
    account = context["account"]
    context["low_balance"] = bool(
        account
        and account.low_balance_threshold is not None
        and account.balance < account.low_balance_threshold
    )
    # Spend limits (docs/FRAUD.md): what was spent today and this month on the customer's
    # clock against its limits, and the dearest price per minute it may call at.
    context["spent"] = spent(account) if account else None
    # A balance past the product's bounds can only have been written around its services
    # (an older version's bug): it is shown as stored, and said to be wrong.
    context["money_out_of_range"] = bool(
        account
        and not (
            balance_in_range(account.balance) and amount_in_range(account.credit_limit, MAX_CREDIT_LIMIT)
        )
    )
    return render(request, "portal/dashboard.html", context)


@never_cache
@customer_required
def cdrs(request, scope: Scope):
    """Every call of the customer, newest first, optionally within a range of days."""
    peer = _customer(scope)
    form = CdrFilterForm(request.GET)
    if form.is_valid():
        start, end = form.bounds()
        page_obj = _cdr_page(request, scope, start=start, end=end)
    else:
        page_obj = Paginator(Cdr.objects.none(), CDRS_PER_PAGE).get_page(1)
    return render(request, "portal/cdrs.html", _context(peer, nav="cdrs", form=form, page_obj=page_obj))


def _dids(scope: Scope):
    targets = DidTarget.objects.select_related("sip_account", "gateway__peer")
    return (
        Did.objects.visible_to(scope)
        .only(*CUSTOMER_DID_FIELDS)
        .prefetch_related(Prefetch("targets", queryset=targets))
        .order_by("number")
    )


def _registered(dids) -> set[int]:
    """Ids of the targets' SIP accounts with a live registration (OpenSIPS's location table)."""
    accounts = {t.sip_account for did in dids for t in did.targets.all() if t.sip_account_id}
    if not accounts:
        return set()
    now = int(timezone.now().timestamp())
    # usrloc keeps an expiry as a Unix time, 0 for a contact that never expires; the domain
    # is empty when OpenSIPS runs without use_domain.
    contacts = Location.objects.filter(username__in={account.username for account in accounts}).filter(
        Q(expires=0) | Q(expires__gt=now)
    )
    live = {
        (username, (domain or "").lower()) for username, domain in contacts.values_list("username", "domain")
    }
    return {
        account.pk
        for account in accounts
        if (account.username, account.domain.lower()) in live or (account.username, "") in live
    }


@never_cache
@customer_required
def numbers(request, scope: Scope):
    """The customer's numbers, what each costs, and where its calls go."""
    peer = _customer(scope)
    page_obj = Paginator(_dids(scope), NUMBERS_PER_PAGE).get_page(request.GET.get("page"))
    context = _context(peer, nav="numbers", page_obj=page_obj, registered=_registered(page_obj))
    return render(request, "portal/numbers.html", context)


@never_cache
@customer_required
def number(request, scope: Scope, pk: int):
    """One of the customer's numbers; anyone else's is a 404."""
    peer = _customer(scope)
    did = access(_dids(scope), scope, pk)
    return render(
        request, "portal/number.html", _context(peer, nav="numbers", did=did, registered=_registered([did]))
    )


def _call(scope: Scope, pk: int) -> Cdr:
    return access(Cdr.objects.only(*CUSTOMER_CALL_FIELDS), scope, pk)


@never_cache
@customer_required
def call(request, scope: Scope, pk: int):
    """One of the customer's calls with its recordings and capture; anyone else's is a 404."""
    peer = _customer(scope)
    cdr = _call(scope, pk)
    files = list(recordings.files_for_cdr(cdr))
    played = recordings.with_presence(f for f in files if f.kind == StoredFile.Kind.RECORDING)
    for stored in played:
        stored.url = reverse("portal:call-recording", args=[cdr.pk, stored.pk])
    captured = any(f.kind == StoredFile.Kind.CAPTURE for f in files)
    context = _context(
        peer,
        nav="cdrs",
        cdr=cdr,
        recordings=played,
        capture_links=recordings.capture_links(cdr, "portal") if captured else [],
    )
    return render(request, "portal/call.html", context)


@customer_required
def call_recording(request, scope: Scope, pk: int, file_id: int):
    """Play (or, with ?download=1, download) a recording of one of the customer's calls."""
    cdr = _call(scope, pk)
    stored = recordings.files_for_cdr(cdr).filter(kind=StoredFile.Kind.RECORDING, pk=file_id).first()
    if stored is None:
        raise Http404
    return recordings.serve_recording(request, stored, download=request.GET.get("download") == "1")
