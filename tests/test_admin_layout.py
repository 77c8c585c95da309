"""The admin's change lists fit a 1366 px wide screen, sidebar open, in English and in French: no sideways scroll."""

import os
import shutil
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model

from tests.factories import make_fiche, person, project
from tests.support import require
from timesheet.domain import fiches, tokens
from timesheet.models import TickerHeartbeat
from timesheet.workers.ticker import TickReport, record_tick, register_heartbeat

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

playwright = pytest.importorskip("playwright.sync_api")

require(os.path.exists(CHROMIUM), "Debian's chromium is not installed (apt-get install chromium).", module=True)

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
LISTS = ["fichetemps", "apitoken", "tickerheartbeat", "ficheevent"]
# How far any part of the page scrolls sideways: the page itself, or the list's own scrolling box.
OVERFLOW = """() => Math.max(
    0,
    document.documentElement.scrollWidth - window.innerWidth,
    ...[...document.querySelectorAll('#changelist-form .results')].map(e => e.scrollWidth - e.clientWidth)
)"""


def long_names():
    """What makes lists wide: long labels, projects, user names, reasons and errors."""
    root = get_user_model().objects.create_superuser("root", password="layout-pass")
    people = [person(name) for name in ("alice.martin-dupont", "bob", "carol.lefebvre")]
    projets = [project(name) for name in ("Refonte du site institutionnel", "Application mobile", "Support niveau 2")]
    labels = ["Maquettes de la page d'accueil et des gabarits", "Intégration", "Écran de connexion", "Tickets du jour"]
    for i, label in enumerate(labels):
        fiche = make_fiche(projets[i % 3], people[i % 3], label, start=i < 3, actor=root)
        fiches.adjust_fiche(
            fiche_id=fiche.pk, actor=root, delta=timedelta(hours=i + 1, minutes=7), reason="Réunion non saisie " * 4
        )
    for each in people:
        tokens.create_token(user=each, name=f"Intégration continue {each.username}", scope="write")
    beat = register_heartbeat(interval=5)
    record_tick(heartbeat_id=beat, report=TickReport(3, 1, 1, 0.0123))
    TickerHeartbeat.objects.filter(pk=beat).update(failures=2, last_error="OperationalError: database is locked " * 3)
    register_heartbeat(interval=5)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", ["en", "fr"])
def test_each_list_fits_1366_pixels(live_server, monkeypatch, settings, language, tmp_path):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.LANGUAGE_CODE = language
    settings.FICHE_MAX_RUNNING_PER_OWNER = 0
    long_names()
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(
                viewport={"width": 1366, "height": 768}, extra_http_headers={"Accept-Language": language}
            )
            page.set_default_timeout(60_000)
            page.goto(f"{live_server.url}/admin/login/")
            page.fill("#id_username", "root")
            page.fill("#id_password", "layout-pass")
            page.click("input[type=submit]")
            overflows = {}
            for model in LISTS:
                page.goto(f"{live_server.url}/admin/timesheet/{model}/")
                assert page.locator("#result_list tbody tr").count() >= 1, model
                overflows[model] = page.evaluate(OVERFLOW)
                page.screenshot(path=str(tmp_path / f"{model}-{language}.png"), full_page=True)
        finally:
            browser.close()
    assert overflows == dict.fromkeys(LISTS, 0)
