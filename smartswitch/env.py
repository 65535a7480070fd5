"""Typed readers for settings taken from the environment.

Each helper fails loudly (ImproperlyConfigured naming the variable) on a value it cannot
read, so a typo in a node's environment stops the process at start-up instead of running
with a silent default.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"Environment variable {name} is required.")
        return default
    return value


def env_secret(name: str, *, minimum_length: int = 40) -> str:
    """A required secret that is long and not a placeholder left from an example file."""
    value = env_str(name)
    if len(value) < minimum_length or "change" in value.lower():
        raise ImproperlyConfigured(
            f"{name} must be a random value of at least {minimum_length} characters; generate one "
            'with: python -c "import secrets; print(secrets.token_urlsafe(50))"'
        )
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no).")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum {minimum}.")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum {minimum}.")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def database_from_url(url: str) -> dict:
    """Return a Django DATABASES entry for sqlite://, mysql:// (PyMySQL) or postgres:// URLs."""
    import dj_database_url

    try:
        # Persistent connections are off: under ASGI each request may run in another thread,
        # and Django's docs say to disable them there.
        config = dj_database_url.parse(url, conn_max_age=0)
    except Exception as exc:  # dj_database_url raises a bare ValueError/KeyError on junk
        raise ImproperlyConfigured(f"DATABASE_URL={url!r} cannot be parsed: {exc}") from None
    engine = config["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        # SQLite is one file: keep connections per request and wait for the writer lock
        # instead of failing at once when the worker and the web server write together.
        name = str(config.get("NAME") or "")
        if name and name != ":memory:" and not name.startswith("file:"):
            # A fresh checkout has no var/ yet; SQLite creates the file but not its folder.
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        config["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    elif engine == "django.db.backends.mysql":
        config["OPTIONS"] = {
            "charset": "utf8mb4",
            "isolation_level": "read committed",
            "init_command": "SET sql_mode='STRICT_TRANS_TABLES'",
        }
        config.setdefault("TEST", {})["CHARSET"] = "utf8mb4"
        config["TEST"]["COLLATION"] = "utf8mb4_unicode_ci"
    elif engine == "django.db.backends.postgresql":
        pass
    else:
        raise ImproperlyConfigured(
            f"DATABASE_URL scheme of {url!r} is not supported: use sqlite://, mysql:// or postgres://."
        )
    return config
