"""The settings module, imported afresh in a subprocess under a given environment."""

import subprocess
import sys

import pytest

from tests.support import ROOT

PRINT = "import django; django.setup(); from django.conf import settings as s; print({!r}.format(s=s))"


def settings_in(env, expression):
    clean = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "settings", **env}
    return subprocess.run(
        [sys.executable, "-c", PRINT.format(expression)],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_embedded_default_is_a_sqlite_file_in_wal_with_immediate_transactions(tmp_path):
    result = settings_in(
        {"DJANGO_DATA_DIR": str(tmp_path)},
        "{s.DATABASES[default][NAME]} {s.DATABASES[default][OPTIONS][transaction_mode]} "
        "{s.DATABASES[default][OPTIONS][init_command]} {s.DEBUG}",
    )
    assert result.stdout.split(" ", 2) == [
        str(tmp_path / "db.sqlite3"),
        "IMMEDIATE",
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL True\n",
    ]


def test_database_url_selects_postgresql():
    result = settings_in(
        {"DATABASE_URL": "postgres://u:p@127.0.0.1:5433/fiches"},
        "{s.DATABASES[default][ENGINE]} {s.DATABASES[default][PORT]} {s.DATABASES[default][NAME]}",
    )
    assert result.stdout.split() == ["django.db.backends.postgresql", "5433", "fiches"]


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must hold a random key"),
        ({"DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must hold a random key"),
        ({"DJANGO_SECRET_KEY": "k" * 50}, "DJANGO_ALLOWED_HOSTS must list the served host names"),
        ({"DJANGO_SECRET_KEY": "k" * 50, "DJANGO_ALLOWED_HOSTS": "x", "DJANGO_DEBUG": "1"}, "DJANGO_DEBUG must be off"),
        ({"DJANGO_SECRET_KEY_FILE": "/nonexistent"}, "DJANGO_SECRET_KEY_FILE='/nonexistent' cannot be read"),
    ],
)
def test_production_refuses_insecure_defaults(env, message):
    result = settings_in({"DJANGO_ENV": "production", **env}, "{s.DEBUG}")
    assert result.returncode != 0
    assert message in result.stderr


def test_production_takes_its_secret_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 50 + "\n")
    result = settings_in(
        {"DJANGO_ENV": "production", "DJANGO_SECRET_KEY_FILE": str(secret), "DJANGO_ALLOWED_HOSTS": "fiches.example"},
        "{s.SECRET_KEY} {s.DEBUG} {s.ALLOWED_HOSTS} {s.SESSION_COOKIE_SECURE}",
    )
    assert result.stdout.split() == ["s" * 50, "False", "['fiches.example']", "True"]


def test_an_unknown_environment_is_refused():
    result = settings_in({"DJANGO_ENV": "staging"}, "{s.DEBUG}")
    assert "DJANGO_ENV must be 'development' or 'production', got 'staging'." in result.stderr
