"""Signing in and out of the portal."""

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.urls import path

from apps.portal.forms import CustomerLoginForm


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


urlpatterns = [
    path("login/", PortalLoginView.as_view(), name="login"),
    path("logout/", PortalLogoutView.as_view(), name="logout"),
]
