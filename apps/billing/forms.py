"""The small forms that move money from the admin, each posted to one billing service.

Amounts are checked by the services (positive payment, non-zero adjustment, within the
bounds of apps.core.money): their refusals come back as errors on these forms. The bounds
are the fields' own too, so that a number past them is refused before any service runs.
"""

from decimal import Decimal

from django import forms

from apps.core.money import MAX_AMOUNT, MONEY_DIGITS, MONEY_PLACES


def _amount(*, maximum: Decimal = MAX_AMOUNT, **kwargs) -> forms.DecimalField:
    return forms.DecimalField(
        max_digits=MONEY_DIGITS,
        decimal_places=MONEY_PLACES,
        max_value=maximum,
        min_value=-maximum,
        **kwargs,
    )


def _reference(help_text: str) -> forms.CharField:
    return forms.CharField(max_length=100, required=False, help_text=help_text)


class PaymentForm(forms.Form):
    amount = _amount(help_text="In the account's currency.")
    reference = _reference("The bank's or gateway's transaction id; posting it twice credits once.")
    description = forms.CharField(max_length=200, required=False)

    def clean_reference(self):
        # Blank means "no reference" (NULL, never a duplicate), not the reference "".
        return self.cleaned_data["reference"].strip() or None


class AdjustmentForm(forms.Form):
    amount = _amount(help_text="Positive credits the account, negative debits it; within +-1,000,000,000.")
    reason = forms.CharField(max_length=200, help_text="Shown on the ledger and in the audit trail.")
    reference = _reference("Optional; posting the same reference twice adjusts once.")

    def clean_reference(self):
        return self.cleaned_data["reference"].strip() or None
