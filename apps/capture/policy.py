"""Which calls are captured: a pure decision call control makes at set-up. No ORM here."""

import hashlib


def sampled(call_id: str, percent: int) -> bool:
    """Whether `call_id` falls in the sampled `percent` of calls.

    A hash of the Call-ID, not a random draw: every node and every retry of call control
    decides the same for the same call, and a test can name calls that are in or out.
    """
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    bucket = int.from_bytes(hashlib.blake2b(call_id.encode(), digest_size=8).digest(), "big") % 10_000
    return bucket < percent * 100


def wants_capture(
    *,
    customer_captures: bool,
    route_captures: bool,
    supplier_captures: bool = False,
    sample_percent: int,
    call_id: str,
) -> bool:
    """Capture a call when its customer, its route or its route's supplier asks, or it is sampled."""
    return customer_captures or route_captures or supplier_captures or sampled(call_id, sample_percent)
