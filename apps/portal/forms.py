"""Forms of the customer portal: sign-in, the filters of the calls and the ledger, and the
account's notification settings (saved by apps.billing's update_account)."""

import zoneinfo
from datetime import date, datetime, time, timedelta

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.billing.models import LedgerEntry
from apps.core.money import MAX_BALANCE, MONEY_DIGITS, MONEY_PLACES
from apps.tenancy.scope import Scope


class CustomerLoginForm(AuthenticationForm):
    """Django's sign-in form that accepts only customer logins."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "customers_only": _(
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


class DayRangeForm(forms.Form):
    """A range of days in one time zone (the site's unless `zone` is given); both ends included."""

    # Calls happen in this century; the bounds also keep "the day after the end" computable.
    EARLIEST, LATEST = date(2000, 1, 1), date(9998, 12, 31)

    start = forms.DateField(required=False, label=_("From"), widget=DateInput())
    end = forms.DateField(required=False, label=_("To"), widget=DateInput())

    def __init__(self, *args, zone: zoneinfo.ZoneInfo | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.zone = zone

    def _in_range(self, name: str):
        value = self.cleaned_data.get(name)
        if value is not None and not self.EARLIEST <= value <= self.LATEST:
            raise ValidationError(
                _("Choose a day between %(first)s and %(last)s.")
                % {"first": self.EARLIEST, "last": self.LATEST}
            )
        return value

    def clean_start(self):
        return self._in_range("start")

    def clean_end(self):
        return self._in_range("end")

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and end < start:
            raise ValidationError(_("The end date is before the start date."))
        return cleaned

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """The range as aware datetimes: from the start day's midnight to the day after the end."""
        start, end = self.cleaned_data.get("start"), self.cleaned_data.get("end")
        return (
            timezone.make_aware(datetime.combine(start, time.min), self.zone) if start else None,
            timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min), self.zone)
            if end
            else None,
        )


# The status filter's choices, as the call list colours them (portal_format's sip_class).
UNANSWERED_CODES = (480, 486, 487, 600, 603)


class CdrFilterForm(DayRangeForm):
    """The call list's filters; every field may be left empty."""

    STATUSES = (
        ("", _("Any status")),
        ("answered", _("Answered")),
        ("unanswered", _("Not answered")),
        ("failed", _("Failed")),
    )

    # Not digits only: a caller may be "anonymous" or a SIP user name.
    caller = forms.CharField(
        max_length=64, required=False, label=_("Caller"), help_text=_("The number or its beginning.")
    )
    callee = forms.CharField(
        max_length=64, required=False, label=_("Callee"), help_text=_("The number or its beginning.")
    )
    destination = forms.CharField(max_length=100, required=False, label=_("Destination"))
    status = forms.ChoiceField(choices=STATUSES, required=False, label=_("Status"))
    sip_code = forms.IntegerField(min_value=100, max_value=699, required=False, label=_("SIP code"))
    min_duration = forms.IntegerField(
        min_value=0, max_value=86_400 * 7, required=False, label=_("Min. duration (s)")
    )

    def apply(self, cdrs):
        """`cdrs` narrowed by the valid filters (call only once is_valid() is true)."""
        data = self.cleaned_data
        start, end = self.bounds()
        cdrs = cdrs.between(start, end)
        # Prefixes: LIKE 'x%' uses the (customer, created_at) index's rows, never a scan of others.
        for name in ("caller", "callee"):
            if data.get(name):
                cdrs = cdrs.filter(**{f"{name}__startswith": data[name]})
        if data.get("destination"):
            cdrs = cdrs.filter(destination__icontains=data["destination"].strip())
        status = data.get("status")
        if status == "answered":
            cdrs = cdrs.filter(sip_code__gte=200, sip_code__lt=300)
        elif status == "unanswered":
            cdrs = cdrs.filter(sip_code__in=UNANSWERED_CODES)
        elif status == "failed":
            cdrs = cdrs.exclude(sip_code__gte=200, sip_code__lt=300).exclude(sip_code__in=UNANSWERED_CODES)
        if data.get("sip_code") is not None:
            cdrs = cdrs.filter(sip_code=data["sip_code"])
        if data.get("min_duration"):
            cdrs = cdrs.filter(duration_ms__gte=data["min_duration"] * 1000)
        return cdrs


class LedgerFilterForm(DayRangeForm):
    """The Money page's ledger filters: a range of days on the customer's clock, a kind, and
    whether call charges are listed one by one or summed per day."""

    kind = forms.ChoiceField(
        choices=[("", _("All kinds")), *LedgerEntry.Kind.choices], required=False, label=_("Kind")
    )
    itemised = forms.BooleanField(required=False, label=_("List call charges one by one"))


class NotificationSettingsForm(forms.Form):
    """The low-balance warning: below which balance, and to which address.

    The bounds here only refuse what cannot be money; update_account checks the rest, and
    its refusals come back as errors on the field they name.
    """

    low_balance_threshold = forms.DecimalField(
        required=False,
        max_digits=MONEY_DIGITS,
        decimal_places=MONEY_PLACES,
        min_value=0,
        max_value=MAX_BALANCE,
        label=_("Warn me when my balance falls below"),
        help_text=_("Leave empty for no warning."),
    )
    notification_email = forms.EmailField(
        required=False,
        label=_("Send warnings to"),
        help_text=_("Leave empty to have your provider warned instead."),
    )


class PriceSearchForm(forms.Form):
    """Digits look a prefix up (the prefixes starting so); words, a destination's name."""

    q = forms.CharField(
        max_length=100,
        required=False,
        label=_("Prefix or destination"),
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("e.g. 4915 or Germany")}),
    )

    def apply(self, rates):
        text = (self.cleaned_data.get("q") or "").strip().lstrip("+")
        if not text:
            return rates
        if text.isdigit():
            return rates.filter(prefix__startswith=text)
        return rates.filter(destination__icontains=text)
