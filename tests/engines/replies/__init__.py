"""MI replies recorded from OpenSIPS 3.6.8 (httpd + mi_http, dialog, usrloc, drouting,
uac_registrant, permissions) with one call up and one contact registered; `recorded(name)`
loads one as {"result": ...} or {"error": ...}, the id and version stripped."""

import json
from pathlib import Path

REPLIES = Path(__file__).parent


def recorded(name: str) -> dict:
    """The reply recorded as `name`.json."""
    return json.loads((REPLIES / f"{name}.json").read_text())
