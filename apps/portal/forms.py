"""Forms of the customer portal: sign-in and the call list's date range."""

from datetime import date, datetime, time, timedelta

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.tenancy.scope import Scope


class CustomerLoginForm(AuthenticationForm):
    """Django's sign-in form that accepts only customer logins."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "customers_only": (
            "This portal is for customers. Operators and resellers' staff sign in to the administration site."
        ),
    }

    # Set when the credentials were right but belong to staff, so the page can show the
    # way to the admin instead of a bare refusal.
    refused_staff = False

    def confirm_login_allowed(self, user) -> None:
        super().confirm_login_allowed(user)
        if not Scope.of_user(user).is_customer:
            self.refused_staff = True
            raise ValidationError(self.error_messages["customers_only"], code="customers_only")


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        # The browser's date picker sends and expects ISO dates whatever the locale.
        super().__init__(format="%Y-%m-%d", **kwargs)


class CdrFilterForm(forms.Form):
    """A range of days in the site's time zone; both ends are included."""

    # Calls happen in this century; the bounds also keep "the day after the end" computable.
    EARLIEST, LATEST = date(2000, 1, 1), date(9998, 12, 31)

    start = forms.DateField(required=False, label="From", widget=DateInput())
    end = forms.DateField(required=False, label="To", widget=DateInput())

    def _in_range(self, name: str):
        value = self.cleaned_data.get(name)
        if value is not None and not self.EARLIEST <= value <= self.LATEST:
            raise ValidationError(f"Choose a day between {self.EARLIEST} and {self.LATEST}.")
        return value

    def clean_start(self):
        return self._in_range("start")

    def clean_end(self):
        return self._in_range("end")

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and end < start:
            raise ValidationError("The end date is before the start date.")
        return cleaned

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """The range as aware datetimes: from the start day's midnight to the day after the end."""
        start, end = self.cleaned_data.get("start"), self.cleaned_data.get("end")
        return (
            timezone.make_aware(datetime.combine(start, time.min)) if start else None,
            timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min)) if end else None,
        )
