"""Money is Decimal, quantized in one place, and bounded in one place."""

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

from apps.core.errors import OutOfRange

# Amounts are kept to the micro-unit: a 6-second call at 0.0045/min costs 0.00045 and
# must not round to zero before it reaches the ledger.
MONEY_PLACES = 6
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)
MONEY_DIGITS = 20

# --- the bounds ------------------------------------------------------------------------------
#
# What the columns hold: DECIMAL(20, 6) on MariaDB and PostgreSQL keeps 14 integer digits
# (|x| < 10^14); on SQLite a MoneyField is an integer count of micro-units, whose int64 keeps
# |x| <= 9,223,372,036,854.775807 (about 9.2 * 10^12). The product accepts far less, so that
# nothing it accepts can ever reach either ceiling:
#
# - MAX_AMOUNT, 10^9: one payment, refund, adjustment, recurring fee or call's charge, and a
#   credit limit or low-balance threshold. A billion units is a billion US dollars, and still
#   $38,000 in dong (26,000 to the dollar) or $11,000 in Lebanese pounds (90,000), the weakest
#   currencies carriers bill in: larger payments are posted in parts. Past it, an amount is
#   a slipped decimal point or a pasted reference number, not money.
# - MAX_PRICE, 10^7 per minute (and per connection): the dearest destinations (satellite,
#   premium numbers) cost a few dollars a minute, 10^5 in the weakest currencies; 100 times
#   that is no price. At MAX_PRICE a call reaches MAX_AMOUNT after 100 minutes, and a
#   charge above MAX_AMOUNT is a rating error, never a ledger row.
# - MAX_BALANCE, 10^12: a balance stays within +-10^12. That is a thousand of the largest
#   payments, or a year of a large carrier's traffic (10^8 minutes at $0.01 is 2.6 * 10^10
#   VND) forty times over. It leaves 100x headroom under DECIMAL(20, 6) and 9.2x under SQLite's
#   int64, for what is computed from balances: spendable = balance + credit limit, per-account
#   sums in SQL (exact integer SUM on SQLite), re-rating totals.
#
# A bound is changed here and nowhere else; it must stay below both column ceilings.
MAX_AMOUNT = Decimal(10) ** 9
MAX_PRICE = Decimal(10) ** 7
MAX_BALANCE = Decimal(10) ** 12
MAX_CREDIT_LIMIT = MAX_AMOUNT
# What DECIMAL(MONEY_DIGITS, MONEY_PLACES) can hold at all (exclusive): a stored value at or
# past it can only come from outside the product (raw SQL, an older version's bug).
STORAGE_LIMIT = Decimal(10) ** (MONEY_DIGITS - MONEY_PLACES)

# Wide enough for any Decimal a database or a client can hand us, so that quantizing a value
# that is out of range (to show it) never raises.
_WIDE = Context(prec=60, rounding=ROUND_HALF_UP, Emax=999, Emin=-999)


def money(value: Decimal | int | str) -> Decimal:
    """Return `value` as a Decimal quantized to the money precision (half up)."""
    if isinstance(value, float):
        raise TypeError("Money is never a float; pass a Decimal, an int or a string.")
    return Decimal(value).quantize(MONEY_QUANTUM, rounding=ROUND_HALF_UP)


ZERO = money(0)


def _decimal(value, *, field: str) -> Decimal:
    if isinstance(value, float):
        raise TypeError("Money is never a float; pass a Decimal, an int or a string.")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError, TypeError):
        raise OutOfRange("Give a number, such as 12.50.", field=field) from None
    if not number.is_finite():
        raise OutOfRange("Give a finite number, such as 12.50.", field=field)
    return number


def _plain(bound: Decimal) -> str:
    return f"{bound:,.0f}"


def check_amount(
    value,
    *,
    field: str,
    maximum: Decimal = MAX_AMOUNT,
    minimum: Decimal | None = None,
) -> Decimal:
    """Return `value` as money when it lies within [minimum, maximum], else raise OutOfRange.

    `minimum` defaults to -maximum. The bounds are compared before rounding, so that a
    value of any size is refused without being rounded first (quantizing 10^30 to six
    places would itself fail), and refused with the field named.
    """
    number = _decimal(value, field=field)
    low = -maximum if minimum is None else minimum
    if number > maximum or number < low:
        if low == -maximum:
            span = f"between -{_plain(maximum)} and {_plain(maximum)}"
        elif low == 0:
            span = f"between 0 and {_plain(maximum)}"
        else:
            span = f"between {_plain(low)} and {_plain(maximum)}"
        raise OutOfRange(f"Give an amount {span}; {_plain_number(number)} is out of range.", field=field)
    return money(number)


def _plain_number(number: Decimal) -> str:
    # The refused value as the user wrote it, shortened when it is absurdly long.
    text = f"{number:f}" if abs(number.adjusted()) < 40 else f"{number:E}"
    return text if len(text) <= 40 else f"{text[:37]}..."


def check_price(value, *, field: str) -> Decimal:
    """Return a price per minute or a connection fee as money, within 0 to MAX_PRICE."""
    return check_amount(value, field=field, maximum=MAX_PRICE, minimum=Decimal(0))


def balance_in_range(value: Decimal) -> bool:
    """Whether a balance lies within +-MAX_BALANCE."""
    return value.is_finite() and -MAX_BALANCE <= value <= MAX_BALANCE


def amount_in_range(value: Decimal | None, maximum: Decimal = MAX_BALANCE) -> bool:
    """Whether a stored amount is one the product could have written (None counts as in range)."""
    return value is None or (isinstance(value, Decimal) and value.is_finite() and abs(value) <= maximum)


def shown(value: Decimal) -> Decimal:
    """`value` at six places for display, whatever its size (never raises on finite values)."""
    if not value.is_finite():
        return value
    return value.quantize(MONEY_QUANTUM, context=_WIDE)
