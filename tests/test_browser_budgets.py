"""A budget going live from 79 % to 100 % in a real browser: on a member's page and in the admin, with the ticker."""

import os
import shutil
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.factories import make_fiche, project
from tests.support import assert_exact, wait_until
from tests.test_browser_people import browser, server  # noqa: F401 (fixtures)
from timesheet.core.dbtime import db_now
from timesheet.domain import budgets, fiches
from timesheet.models import Budget, BudgetCrossing, Etat, FicheTemps, Team, TeamMembership

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LIMIT = 120  # seconds: begun 77 % in, the pages open below 80 % and it runs out about half a minute later


def hashed(password):
    # Hashed the way the server's own settings check it (the tests' settings use a faster hasher).
    return PBKDF2PasswordHasher().encode(password, PBKDF2PasswordHasher().salt())


def sign_in(page, url, username, *, admin=False):
    page.goto(f"{url}/admin/" if admin else f"{url}/")
    page.fill("#id_username", username)
    page.fill("#id_password", "browser-pass")
    page.get_by_role("button", name="Sign in").or_(page.get_by_role("button", name="Log in")).first.click()
    page.wait_for_load_state()


def test_a_budget_goes_live_from_79_to_100_percent_on_the_page_and_in_the_admin(
    server,  # noqa: F811
    browser,  # noqa: F811
    spawn_worker,
    tmp_path,
):
    people = get_user_model().objects
    dana = people.create(username="dana", password=hashed("browser-pass"))
    people.create(username="root", password=hashed("browser-pass"), is_staff=True, is_superuser=True)
    team = Team.objects.create(name="Studio")
    TeamMembership.objects.create(team=team, user=dana)
    projet = project("Site vitrine")
    projet.teams.add(team)
    budget = budgets.save_budget(
        projet_id=projet.pk, kind="time", period="total", limit=LIMIT, thresholds=[80, 100], action="stop"
    )
    began = db_now() - timedelta(seconds=LIMIT * 0.77)
    began = began.replace(microsecond=began.microsecond // 1000 * 1000)
    fiche = fiches.start_fiche(fiche_id=make_fiche(projet, dana, "Maquettes").pk, actor=dana, at=began)
    ticker = spawn_worker("--interval", "0.5")
    wait_until(lambda: Budget.objects.get(pk=budget.pk).checked_at is not None, timeout=60, message="checked")

    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    sign_in(page, server, "dana")
    admin_context = browser.new_context(viewport={"width": 1366, "height": 900})
    admin_context.set_default_timeout(60_000)
    admin = admin_context.new_page()
    sign_in(admin, server, "root", admin=True)
    admin.goto(f"{server}/admin/timesheet/budget/")

    card = page.locator(f"[data-budget='{budget.pk}']")
    card.get_by_text("Site vitrine").wait_for()
    row = admin.locator(".budget-live").first
    row.wait_for()
    page.screenshot(path=str(tmp_path / "budget-page-79.png"), full_page=True)
    admin.screenshot(path=str(tmp_path / "budget-admin-79.png"), full_page=True)
    assert 77.0 <= float(card.locator(".budget-percent").inner_text().split()[0]) < 100

    # Nobody reloads: both pages draw the budget again by themselves.
    card.locator(".budget-percent").filter(has_text="100.0 %").wait_for(timeout=120_000)
    row.locator(".budget-percent").filter(has_text="100.0 %").wait_for(timeout=120_000)
    card.get_by_text("100 % crossed at").wait_for()
    page.screenshot(path=str(tmp_path / "budget-page-100.png"), full_page=True)
    admin.screenshot(path=str(tmp_path / "budget-admin-100.png"), full_page=True)

    # Stopped at exactly the instant the budget ran out, 120 s after it began, by the ticker.
    wait_until(lambda: FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_PAUSE, timeout=60)
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == timedelta(seconds=LIMIT)
    assert BudgetCrossing.objects.get(budget=budget, percent=100).crossed_at == began + timedelta(seconds=LIMIT)
    assert_exact(fiche.pk)
    ticker.process.terminate()
    ticker.wait()
    if os.environ.get("FICHES_SCREENSHOTS"):
        for path in tmp_path.glob("budget-*.png"):
            shutil.copy(path, os.path.join(os.environ["FICHES_SCREENSHOTS"], path.name))
