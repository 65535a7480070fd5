"""A price-list row as the import pipeline, sell generation and exports exchange it.

Plain data, no ORM: parsers produce these, validation checks them, activation turns them
into Rate rows of the table's next version.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class RateRow:
    prefix: str
    price: Decimal  # per minute, in the table's currency
    destination: str = ""
    connection_fee: Decimal = Decimal(0)
    min_seconds: int = 1
    increment_seconds: int = 1
    free_seconds: int = 0
    effective_from: datetime | None = None  # None: the import's activation time
    effective_to: datetime | None = None
    line: int | None = None  # where it came from in the source file, for error reports
    period: str = ""  # a time profile's name (weekend, offpeak): the price applies in its hours
