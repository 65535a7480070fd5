"""Failed SIP digest authentications and web logins, counted per address and per user."""


def sip_failure(source_ip: str, username: str, *, node_id: int | None) -> bool:
    """Count one failed digest authentication; True when the address is (now) banned."""
    raise NotImplementedError  # apps.fraud helper H4 writes it
