"""Signing in and out of the portal, and a forgotten password reset by e-mail."""

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import HttpResponseRedirect
from django.urls import path, reverse_lazy
from django.utils import translation
from django.utils.translation import gettext as _

from apps.fraud.login import client_ip, reset_allowed
from apps.portal.forms import CustomerLoginForm
from apps.portal.forms_account import CustomerPasswordResetForm
from apps.portal.views.account import set_language_cookie
from apps.tenancy.models import Membership


class PortalLoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    authentication_form = CustomerLoginForm
    redirect_authenticated_user = True

    def form_valid(self, form):
        """Sign in, and serve the portal in the language this login chose last (Account page)."""
        response = super().form_valid(form)
        language = Membership.objects.filter(user=form.get_user()).values_list("language", flat=True).first()
        if language:
            translation.activate(language)
            set_language_cookie(response, language)
        return response


class PortalLogoutView(auth_views.LogoutView):
    """Sign out (POST only, as Django requires) and say so on the sign-in page."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, _("You have signed out."))
        return response


# Django's reset flow with the portal's pages; the e-mailed link leads back to the portal.
class PortalPasswordResetView(auth_views.PasswordResetView):
    template_name = "portal/password_reset_form.html"
    email_template_name = "portal/password_reset_email.txt"
    subject_template_name = "portal/password_reset_subject.txt"
    form_class = CustomerPasswordResetForm
    success_url = reverse_lazy("portal:password-reset-done")

    def form_valid(self, form):
        """Send the e-mail unless this address or e-mail asked too often (apps.fraud.login);
        the page that follows is the same either way, so it tells nobody which."""
        if not reset_allowed(form.cleaned_data["email"], client_ip(self.request)):
            return HttpResponseRedirect(self.get_success_url())
        return super().form_valid(form)


class PortalPasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "portal/password_reset_confirm.html"
    success_url = reverse_lazy("portal:password-reset-complete")


urlpatterns = [
    path("login/", PortalLoginView.as_view(), name="login"),
    path("logout/", PortalLogoutView.as_view(), name="logout"),
    path("password-reset/", PortalPasswordResetView.as_view(), name="password-reset"),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="portal/password_reset_done.html"),
        name="password-reset-done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        PortalPasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path(
        "password-reset/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="portal/password_reset_complete.html"),
        name="password-reset-complete",
    ),
]
