"""Forms of the portal's Connectivity and Account pages.

They only collect and compare what the customer typed; the rules that matter (a SIP
password's strength, who may issue a key) are the services', which the views call.
"""

from django import forms
from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from apps.tenancy.models import ApiKey
from apps.tenancy.scope import Scope


class SipPasswordForm(forms.Form):
    """A new password for one SIP account, typed twice (it is never shown again)."""

    password1 = forms.CharField(
        label=_("New SIP password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("At least 10 characters, letters and digits mixed."),
    )
    password2 = forms.CharField(
        label=_("Repeat it"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, account_id: int, **kwargs):
        # Several accounts' forms share one page: the prefix keeps their field ids apart.
        super().__init__(*args, prefix=f"sip{account_id}", **kwargs)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1") and cleaned.get("password1") != cleaned.get("password2"):
            raise ValidationError(_("The two passwords differ."))
        return cleaned


class ApiKeyForm(forms.Form):
    """A new customer API key: what to call it and whether it may write."""

    name = forms.CharField(label=_("Name"), max_length=100, help_text=_("Say where the key is used."))
    access = forms.ChoiceField(
        label=_("Access"),
        choices=[
            (ApiKey.Access.READ, _("Read only")),
            (ApiKey.Access.READ_WRITE, _("Read and write")),
        ],
        initial=ApiKey.Access.READ,
    )


class LanguageForm(forms.Form):
    language = forms.ChoiceField(label=_("Language of the portal"), choices=settings.LANGUAGES)


class CustomerPasswordResetForm(PasswordResetForm):
    """Django's reset form that mails only customer logins.

    Operators and resellers' staff sign in to the admin; a portal page that resets their
    passwords by e-mail would make a mailbox the key to the whole switch.
    """

    def get_users(self, email):
        return (user for user in super().get_users(email) if Scope.of_user(user).is_customer)
