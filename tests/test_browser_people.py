"""The people's page in a real browser (Debian's chromium) against a real uvicorn: two tabs stay in step."""

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.support import ROOT, require, wait_until
from timesheet.domain import fiches
from timesheet.models import Etat, FicheEvent, FicheTemps, Stretch

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")
require(os.path.exists(CHROMIUM), "Debian's chromium is not installed (apt-get install chromium).", module=True)

from .test_browser import LAUNCH_ARGS  # noqa: E402

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def server(worker_env, tmp_path):
    """uvicorn serving the test database on a free loopback port, the way the README starts it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp_path / "uvicorn.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "settings.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--timeout-graceful-shutdown",
            "1",
        ],
        cwd=ROOT,
        env={**worker_env, "DJANGO_DATA_DIR": str(tmp_path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def answers():
        assert process.poll() is None, (tmp_path / "uvicorn.log").read_text()
        try:
            urllib.request.urlopen(f"{url}/accounts/login/", timeout=5)
        except OSError:
            return False
        return True

    wait_until(answers, every=0.1, message="uvicorn did not answer in time")
    yield url
    process.terminate()
    process.wait(30)
    log.close()


@pytest.fixture
def browser(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the test's own ORM calls beside Playwright's loop
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def shift_back(fiche_id, by):
    """Pretend the running fiche started ``by`` earlier."""
    fiche = FicheTemps.objects.get(pk=fiche_id)
    FicheTemps.objects.filter(pk=fiche_id).update(
        en_calcul_depuis=fiche.en_calcul_depuis - by,
        compte_jusqua=fiche.en_calcul_depuis - by,
        temps_impute=fiche.temps_impute,
    )
    Stretch.objects.filter(fiche_id=fiche_id, ended_at__isnull=True).update(started_at=fiche.en_calcul_depuis - by)
    FicheEvent.objects.filter(fiche_id=fiche_id, kind="started").update(at=fiche.en_calcul_depuis - by)


def sign_in(page, url):
    page.goto(f"{url}/")
    page.get_by_label("Username").fill("dana")
    page.get_by_label("Password").fill("browser-pass")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")


def test_a_person_starts_switches_and_stops_earlier_across_two_tabs(server, browser, projet, tmp_path):
    # Hashed the way the server's own settings check it (the tests' settings use a faster hasher).
    password = PBKDF2PasswordHasher().encode("browser-pass", PBKDF2PasswordHasher().salt())
    dana = get_user_model().objects.create(username="dana", password=password)
    fiches.create_fiche(projet_id=projet.pk, actor=dana, libelle="Maquettes")
    fiches.create_fiche(projet_id=projet.pk, actor=dana, libelle="Intégration")
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(60_000)
    first = context.new_page()
    sign_in(first, server)
    second = context.new_page()  # the same session, another tab
    second.goto(f"{server}/")

    first.get_by_role("button", name="Start Maquettes").click()
    maquettes = FicheTemps.objects.get(libelle="Maquettes")
    first.get_by_text("Started.").wait_for()
    wait_until(lambda: FicheTemps.objects.get(pk=maquettes.pk).etat == Etat.EN_CALCUL)
    # The other tab learns it from the stream, without a reload.
    second.locator(f'[data-fiche-id="{maquettes.pk}"] .etat-en_calcul').wait_for()
    second.get_by_role("button", name="Switch to this Intégration").wait_for()
    first.screenshot(path=str(tmp_path / "people-1366.png"), full_page=True)

    second.get_by_role("button", name="Switch to this Intégration").click()
    integration = FicheTemps.objects.get(libelle="Intégration")
    wait_until(lambda: FicheTemps.objects.get(pk=integration.pk).etat == Etat.EN_CALCUL)
    first.locator(f'[data-fiche-id="{integration.pk}"] .etat-en_calcul').wait_for()
    paused = FicheEvent.objects.get(fiche=maquettes, kind="paused")
    started = FicheEvent.objects.get(fiche=integration, kind="started")
    assert paused.at == started.at

    # "I stopped earlier": as if it had been started ten minutes ago, stopped five minutes in.
    shift_back(integration.pk, timedelta(minutes=10))
    began = FicheTemps.objects.get(pk=integration.pk).en_calcul_depuis
    at = (began + timedelta(minutes=6)).replace(second=0, microsecond=0)
    card = first.locator(f'[data-fiche-id="{integration.pk}"]')
    card.get_by_text("I stopped earlier").click()
    card.get_by_label("Stopped at").fill(at.strftime("%Y-%m-%dT%H:%M"))  # the server's TIME_ZONE is UTC here
    card.get_by_role("button", name="Pause at that time").click()
    wait_until(lambda: FicheTemps.objects.get(pk=integration.pk).etat == Etat.EN_PAUSE)
    assert FicheTemps.objects.get(pk=integration.pk).temps_impute == at - began  # nothing after it counts
    second.locator(f'[data-fiche-id="{integration.pk}"] .etat-en_pause').wait_for()

    phone = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    page = phone.new_page()
    page.set_default_timeout(60_000)
    sign_in(page, server)
    page.screenshot(path=str(tmp_path / "people-375.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing wider than the phone
    if os.environ.get("FICHES_SCREENSHOTS"):
        for name in ("people-1366.png", "people-375.png"):
            shutil.copy(tmp_path / name, os.path.join(os.environ["FICHES_SCREENSHOTS"], name))
