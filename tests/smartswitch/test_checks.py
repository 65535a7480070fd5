"""Models and migrations agree; system checks pass, also in production mode."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_models_and_migrations_agree():
    # Exits with SystemExit(1) when a model change lacks its migration.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_deploy_checks_find_no_errors_in_production_mode(tmp_path):
    # The browser tests allow the ORM beside their event loop; a deployment must not.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(
        DEBUG="0",
        SECRET_KEY="x" * 60 + "-a-long-random-production-secret",
        ALLOWED_HOSTS="switch.example.com",
        SMARTSWITCH_VAR_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
