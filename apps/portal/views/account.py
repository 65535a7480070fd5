"""Account: the customer's portal password, API keys and the portal's language.

Keys are issued and revoked through apps.tenancy.services, as the admin does; a new key's
secret is rendered in the answer to the POST that made it and never stored or sent again
(not in a redirect's message, which would keep it in the session or a cookie). So the
answer cannot be a redirect, and a browser asked to reload it would post the form again: each
rendering of the form carries a one-time token kept in the session, and a post whose token was
used already makes no second key.
"""

import secrets

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from apps.core.errors import DomainError
from apps.portal.forms_account import ApiKeyForm, LanguageForm
from apps.portal.views.common import context, customer, customer_required
from apps.tenancy import services as tenancy
from apps.tenancy.models import ApiKey, Membership
from apps.tenancy.scope import Scope


def set_language_cookie(response, language: str) -> None:
    """Make LocaleMiddleware serve `language` to this browser (what Django's set_language does)."""
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )


def _keys(peer):
    # The customer's keys are the ones issued to its own peer, reached from the peer that
    # customer() scoped; usable keys first, then the revoked ones.
    keys = list(peer.api_keys.order_by("name", "pk"))
    return [key for key in keys if key.revoked_at is None] + [key for key in keys if key.revoked_at]


KEY_FORM_TOKENS = "portal_api_key_form_tokens"
KEY_FORM_TOKENS_KEPT = 20  # forms of one session open at once (tabs); older ones expire


def _key_form_token(request) -> str:
    """A new one-time token for the key form, remembered in the session."""
    token = secrets.token_urlsafe(16)
    kept = request.session.get(KEY_FORM_TOKENS, [])
    request.session[KEY_FORM_TOKENS] = [*kept, token][-KEY_FORM_TOKENS_KEPT:]
    return token


def _spend_key_form_token(request) -> bool:
    """True (once) if the post carries a token of a form this session was given."""
    kept = request.session.get(KEY_FORM_TOKENS, [])
    token = request.POST.get("form_token", "")
    if token not in kept:
        return False
    request.session[KEY_FORM_TOKENS] = [other for other in kept if other != token]
    return True


def _page(request, scope: Scope, *, status: int = 200, **forms):
    peer = customer(scope)
    membership = Membership.objects.get(user=request.user)
    password_form = forms.get("password_form") or PasswordChangeForm(request.user)
    # Django's form grabs the focus, which belongs to a new key's secret or the first field.
    password_form.fields["old_password"].widget.attrs.pop("autofocus", None)
    page = context(
        peer,
        nav="account",
        password_form=password_form,
        key_form=forms.get("key_form") or ApiKeyForm(),
        key_form_token=_key_form_token(request),
        language_form=LanguageForm(initial={"language": membership.language or translation.get_language()}),
        keys=_keys(peer),
        new_key=forms.get("new_key"),
        token=forms.get("token"),
    )
    return render(request, "portal/account.html", page, status=status)


@never_cache
@customer_required
def account(request, scope: Scope):
    """The customer's login, API keys and language."""
    return _page(request, scope)


@never_cache
@require_POST
@customer_required
def password_change(request, scope: Scope):
    """Change the portal password; this browser stays signed in, other sessions end."""
    form = PasswordChangeForm(request.user, request.POST)
    if not form.is_valid():
        return _page(request, scope, status=400, password_form=form)
    user = form.save()
    update_session_auth_hash(request, user)
    messages.success(request, _("Your password is changed."))
    return redirect("portal:account")


@never_cache
@require_POST
@customer_required
def api_key_create(request, scope: Scope):
    """Issue a customer key for this customer and show its secret, this once."""
    peer = customer(scope)
    if not _spend_key_form_token(request):
        # The same form posted again (a reload of the page that showed the secret): no
        # second key. A form from an expired session lands here too.
        messages.warning(
            request,
            _("That form was already sent: no other key was made. A key's secret is shown only once."),
        )
        return redirect(reverse("portal:account") + "#api-keys")
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            key, token = tenancy.create_api_key(
                actor=scope,
                name=form.cleaned_data["name"],
                scope=ApiKey.Scope.CUSTOMER,
                peer=peer,
                access=form.cleaned_data["access"],
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            return _page(request, scope, new_key=key, token=token)
    return _page(request, scope, status=400, key_form=form)


@never_cache
@require_POST
@customer_required
def api_key_revoke(request, scope: Scope, pk: int):
    """Revoke one of the customer's keys; anyone else's is a 404."""
    key = get_object_or_404(customer(scope).api_keys.all(), pk=pk)
    tenancy.revoke_api_key(key, actor=scope)
    messages.success(
        request, _("The key %(name)s is revoked; requests with it are refused.") % {"name": key.name}
    )
    return redirect(reverse("portal:account") + "#api-keys")


@require_POST
@customer_required
def language(request, scope: Scope):
    """Serve the portal in the chosen language, now and at every later sign-in."""
    form = LanguageForm(request.POST)
    if not form.is_valid():
        return _page(request, scope, status=400)
    chosen = form.cleaned_data["language"]
    tenancy.set_login_language(Membership.objects.get(user=request.user), actor=scope, language=chosen)
    translation.activate(chosen)
    messages.success(request, _("The portal speaks your language now."))
    response = redirect("portal:account")
    set_language_cookie(response, chosen)
    return response


urlpatterns = [
    path("account/", account, name="account"),
    path("account/password/", password_change, name="password-change"),
    path("account/api-keys/", api_key_create, name="api-key-create"),
    path("account/api-keys/<int:pk>/revoke/", api_key_revoke, name="api-key-revoke"),
    path("account/language/", language, name="language"),
]
