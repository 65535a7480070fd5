"""Pure rating math: a tariff and a duration in, seconds and money out. No ORM, no clock."""

from dataclasses import dataclass
from decimal import Decimal

from apps.core.money import money


@dataclass(frozen=True)
class Tariff:
    price: Decimal  # per minute
    connection_fee: Decimal = Decimal(0)
    min_seconds: int = 1
    increment_seconds: int = 1
    free_seconds: int = 0


def ceil_to(value: int, step: int) -> int:
    """Round `value` up to a multiple of `step`."""
    return -(-value // step) * step


def billable_seconds(duration: int, *, minimum: int, increment: int, free: int = 0) -> int:
    """Seconds to bill for `duration` under a min/increment/free tariff such as 30/6/0."""
    if duration <= 0 or duration <= free:
        return 0
    billed = max(duration, minimum)
    return minimum + ceil_to(billed - minimum, increment)


def duration_seconds(duration_ms: int) -> int:
    """Whole seconds of a call measured in milliseconds, rounded up (a started second counts)."""
    return -(-duration_ms // 1000) if duration_ms > 0 else 0


def call_cost(tariff: Tariff, duration_ms: int) -> tuple[int, Decimal]:
    """Return (billable seconds, cost) of an answered call of `duration_ms`."""
    seconds = billable_seconds(
        duration_seconds(duration_ms),
        minimum=tariff.min_seconds,
        increment=tariff.increment_seconds,
        free=tariff.free_seconds,
    )
    if seconds == 0:
        # Unanswered, or over within the free seconds: nothing to pay, not even the fee.
        return 0, money(0)
    return seconds, money(tariff.connection_fee + tariff.price * seconds / 60)
