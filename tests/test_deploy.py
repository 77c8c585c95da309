"""The production posture: Django's deployment checks pass."""

import secrets
import subprocess
import sys

from .conftest import ROOT


def test_check_deploy_passes_in_production_mode(worker_env, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(secrets.token_urlsafe(60))
    env = {
        **worker_env,
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY_FILE": str(secret),
        "DJANGO_ALLOWED_HOSTS": "fiches.example.org",
        "DJANGO_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
