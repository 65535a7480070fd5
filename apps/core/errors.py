"""Domain errors: raised by services, mapped to HTTP once in apps.core.api."""


class DomainError(Exception):
    """A request the business rules refuse; the message is safe to show to the user."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotAllowed(DomainError):
    status_code = 403
    code = "not_allowed"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class OutOfRange(DomainError):
    """An amount, price or balance beyond what the product accepts (apps.core.money's bounds)."""

    code = "out_of_range"
