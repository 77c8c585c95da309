"""The fiche admin's own pages: the report as its form submits it, its rounding in words, and the adjustment."""

import re
from datetime import timedelta

import pytest
from django.utils import translation

from tests.factories import make_fiche
from timesheet.domain import days, fiches
from timesheet.models import FicheEvent, FicheTemps
from timesheet.web.admin.fiche_pages import ROUNDING_SCOPES

pytestmark = pytest.mark.django_db

LIST = "/admin/timesheet/fichetemps/"
REPORT = f"{LIST}report/"


def with_time(projet, owner, actor, hours=2):
    """A paused fiche of ``owner`` with ``hours`` adjusted in today."""
    fiche = make_fiche(projet, owner)
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=actor, delta=timedelta(hours=hours), reason="x")
    return fiche


def form_defaults(response):
    """What the report's form submits as it is shown: each field's value, "everyone" an empty owner."""
    page = response.content.decode()
    form = page[page.index('<form method="get" class="report-filters">') :]
    form = form[: form.index("</form>")]
    values = dict(re.findall(r'<input type="date" name="(\w+)" value="([^"]*)"', form))
    for name in ("group", "by", "owner"):
        select = re.search(rf'<select name="{name}">(.*?)</select>', form, re.S).group(1)
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', select)
        values[name] = chosen.group(1) if chosen else re.search(r'<option value="([^"]*)"', select).group(1)
    return values


# The report -------------------------------------------------------------------------------------


def test_the_report_shown_with_its_forms_defaults_is_everyones(superuser_client, superuser, projet, user, other_user):
    for owner in (user, other_user):
        with_time(projet, owner, superuser)
    defaults = form_defaults(superuser_client.get(REPORT))
    assert defaults["owner"] == ""  # "everyone", as the form sends it
    response = superuser_client.get(REPORT, defaults)
    assert response.context["error"] == ""
    assert {row["owner"]["username"] for row in response.context["report"]["rows"]} == {"alice", "bob"}
    assert 'class="errornote"' not in response.content.decode()


def test_the_reports_export_takes_the_forms_defaults_too(superuser_client, superuser, projet, user):
    with_time(projet, user, superuser)
    defaults = form_defaults(superuser_client.get(REPORT))
    response = superuser_client.get("/reports/export.csv", defaults)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")


def rounding_line(response):
    """The report's sentence about rounding, as text."""
    match = re.search(r'<p class="report-rounding">(.*?)</p>', response.content.decode(), re.S)
    assert match, "no rounding sentence"
    return re.sub(r"<[^>]+>", "", match.group(1))


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_reports_rounding_off_is_said_in_words_without_a_step(superuser_client, settings, language):
    settings.LANGUAGE_CODE = language
    settings.REPORT_ROUNDING, settings.REPORT_ROUNDING_SCOPE = "none", "group"
    line = rounding_line(superuser_client.get(REPORT, HTTP_ACCEPT_LANGUAGE=language))
    assert {"en": "none", "fr": "aucun"}[language] in line
    assert "min" not in line and "group" not in line


@pytest.mark.parametrize("scope", ["group", "stretch"])
def test_the_reports_rounding_shows_its_labels_not_its_values_in_french(superuser_client, settings, scope):
    settings.LANGUAGE_CODE = "fr"
    settings.REPORT_ROUNDING, settings.REPORT_ROUNDING_STEP_MINUTES, settings.REPORT_ROUNDING_SCOPE = "up", 6, scope
    line = rounding_line(superuser_client.get(REPORT, HTTP_ACCEPT_LANGUAGE="fr"))
    assert "supérieur" in line and "6 min" in line
    assert not re.search(r"\b(up|none)\b", line), line
    with translation.override("fr"):
        assert str(ROUNDING_SCOPES[scope]) in line  # the scope's label, as the catalogue translates it
    assert f"par {scope} (" not in line and f"per {scope} (" not in line  # the bare value, as it was


def test_the_reports_rounding_names_its_scope_in_english(superuser_client, settings):
    settings.REPORT_ROUNDING, settings.REPORT_ROUNDING_STEP_MINUTES = "nearest", 15
    settings.REPORT_ROUNDING_SCOPE = "group"
    assert "per day and project" in rounding_line(superuser_client.get(REPORT))
    settings.REPORT_ROUNDING_SCOPE = "stretch"
    assert "per stretch" in rounding_line(superuser_client.get(REPORT))


# The adjustment ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed, added",
    [
        ("1:30", timedelta(hours=1, minutes=30)),
        ("0:05", timedelta(minutes=5)),
        ("1:30:15", timedelta(hours=1, minutes=30, seconds=15)),
        ("12:00:00", timedelta(hours=12)),
    ],
)
def test_the_adjust_form_reads_hours_and_minutes(superuser_client, projet, user, typed, added):
    fiche = make_fiche(projet, user)
    response = superuser_client.post(f"{LIST}{fiche.pk}/adjust/", {"delta": typed, "reason": "x"})
    assert response.status_code == 302, response.context["form"].errors
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == added


def test_the_adjust_forms_help_says_what_it_reads(superuser_client, projet, user):
    fiche = make_fiche(projet, user)
    help_text = str(superuser_client.get(f"{LIST}{fiche.pk}/adjust/").context["form"].fields["delta"].help_text)
    assert "H:MM" in help_text and "H:MM:SS" in help_text and "1:30" in help_text


def test_a_day_not_begun_for_the_owner_is_refused_on_the_adjust_forms_day(superuser_client, projet, user):
    fiche = make_fiche(projet, user)
    later = days.today_for(user.pk) + timedelta(days=1)
    response = superuser_client.post(
        f"{LIST}{fiche.pk}/adjust/", {"delta": "0:30", "reason": "x", "day": later.isoformat()}
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == ["day"]
    assert "has not come yet for the owner" in errors["day"][0]
    assert not FicheEvent.objects.filter(kind=FicheEvent.Kind.ADJUSTED).exists()
    today = days.today_for(user.pk).isoformat()
    response = superuser_client.post(f"{LIST}{fiche.pk}/adjust/", {"delta": "0:30", "reason": "x", "day": today})
    assert response.status_code == 302
