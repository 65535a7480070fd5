"""Settings come from the environment and fail loudly on bad values."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from smartswitch.env import database_from_url, env_bool, env_int

ROOT = Path(__file__).resolve().parents[2]


def test_booleans_are_strict(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    assert env_bool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env_bool("X_FLAG", False)


def test_integers_are_checked(monkeypatch):
    monkeypatch.setenv("X_NUMBER", "0")
    with pytest.raises(ImproperlyConfigured, match="minimum"):
        env_int("X_NUMBER", 5, minimum=1)
    monkeypatch.setenv("X_NUMBER", "five")
    with pytest.raises(ImproperlyConfigured, match="X_NUMBER"):
        env_int("X_NUMBER", 5)


@pytest.mark.parametrize(
    ("url", "engine"),
    [
        ("sqlite:////tmp/x.sqlite3", "django.db.backends.sqlite3"),
        ("mysql://root@127.0.0.1:3306/smartswitch", "django.db.backends.mysql"),
        ("postgres://postgres@127.0.0.1:5432/smartswitch", "django.db.backends.postgresql"),
    ],
)
def test_database_url_schemes(url, engine):
    config = database_from_url(url)
    assert config["ENGINE"] == engine
    if engine.endswith("mysql"):
        assert config["OPTIONS"]["charset"] == "utf8mb4"


def test_an_unsupported_database_is_refused():
    with pytest.raises(ImproperlyConfigured, match="not supported"):
        database_from_url("oracle://user@host/db")


def _django_setup(env: dict) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.DATABASES['default']['ENGINE'], settings.CHANNEL_LAYERS['default']['BACKEND'])",
        ],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "smartswitch.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_mode_requires_a_secret_key():
    result = _django_setup({"DEBUG": "0", "ALLOWED_HOSTS": "switch.example.com"})
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_no_environment_at_all_runs_one_demo_node(tmp_path):
    result = _django_setup({"SMARTSWITCH_VAR_DIR": str(tmp_path), "REDIS_URL": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "channels.layers.InMemoryChannelLayer"]


def test_redis_switches_to_the_cluster_channel_layer(tmp_path):
    result = _django_setup({"SMARTSWITCH_VAR_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "channels_redis.core.RedisChannelLayer"


def test_every_variable_the_settings_read_is_documented_in_env_example():
    import re

    read = set(re.findall(r'env_[a-z]+\("([A-Z_]+)"', (ROOT / "smartswitch" / "settings.py").read_text()))
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / "deploy" / "env.example").read_text(), re.MULTILINE))
    assert read, "the settings module reads no variables?"
    assert read - documented == set()


def test_the_sqlite_folder_is_created_when_missing(tmp_path):
    target = tmp_path / "not" / "yet" / "db.sqlite3"
    database_from_url(f"sqlite:///{target}")
    assert target.parent.is_dir()


@pytest.mark.parametrize("secret", ["change-me-to-a-random-value-of-at-least-40-characters", "short"])
def test_production_refuses_a_placeholder_or_short_secret_key(secret):
    result = _django_setup({"DEBUG": "0", "SECRET_KEY": secret, "ALLOWED_HOSTS": "switch.example.com"})
    assert result.returncode != 0
    assert "SECRET_KEY must be a random value" in result.stderr


def test_opensips_and_keepalived_ask_the_call_control_unit_by_default():
    """The default CALL_CONTROL_URL and KEEPALIVED_HEALTH_URL name smartswitch-callcontrol's
    address, and that unit is one process that warms up before its first call: a unit moved
    to another port (or back into smartswitch-web) without the settings would leave every
    node's OpenSIPS asking nobody."""
    import re
    from urllib.parse import urlsplit

    from django.conf import settings

    unit = (ROOT / "deploy" / "systemd" / "smartswitch-callcontrol.service").read_text()
    command = " ".join(re.search(r"^ExecStart=(.*?)(?<!\\)$", unit, re.MULTILINE | re.DOTALL)[1].split())
    host, port = re.search(r"--host (\S+) --port (\d+)", command).groups()
    assert "--workers 1 " in command and "--lifespan on" in command
    for url in (settings.CALL_CONTROL_URL, settings.KEEPALIVED_HEALTH_URL):
        assert (urlsplit(url).hostname, urlsplit(url).port) == (host, int(port)), url
    example = (ROOT / "deploy" / "env.example").read_text()
    assert f"CALL_CONTROL_URL={settings.CALL_CONTROL_URL}\n" in example
    assert f"KEEPALIVED_HEALTH_URL={settings.KEEPALIVED_HEALTH_URL}\n" in example
