"""Demo data for `manage.py loaddemo`: a small carrier, two resellers, a month of calls.

Everything goes through the services, as an operator's clicks would; only CDR rows are
bulk-inserted, because in production OpenSIPS writes them. Each step looks its objects up
by natural key first (login, reseller, peer, table and node names, payment references, CDR
call ids), so a second run changes nothing. Randomness comes from one `random.Random` per
step, seeded with a fixed value, so two fresh databases get the same data.
"""

from apps.core.demo.cast import API_KEY_NAME, CALL_ID_PREFIX, DEFAULT_CDRS, DEMO_PASSWORD
from apps.core.demo.loader import DemoLoader, Report

__all__ = ["API_KEY_NAME", "CALL_ID_PREFIX", "DEFAULT_CDRS", "DEMO_PASSWORD", "DemoLoader", "Report"]
