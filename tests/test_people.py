"""The people's page at /: everyone's fiches, one click per transition, refusals shown, nothing lost."""

from datetime import timedelta
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from tests.factories import make_fiche, running_fiche
from tests.support import SESSION_ENDINGS
from timesheet.core.dbtime import db_now
from timesheet.domain import fiches, profiles
from timesheet.models import ApiToken, Etat, FicheTemps, Profile, Projet, Stretch

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def one_at_a_time(settings):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 1


def test_signed_out_visitors_go_to_the_sign_in_page():
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"
    page = Client().get("/accounts/login/").content.decode()
    assert 'autocomplete="current-password"' in page and "<label" in page


def test_a_person_signs_in_and_sees_only_their_fiches_running_first(user, other_user, projet):
    fiches.create_fiche(projet_id=projet.pk, actor=user, libelle="En pause")
    fiches.create_fiche(projet_id=projet.pk, actor=user, libelle="En cours", start=True)
    fiches.create_fiche(projet_id=projet.pk, actor=other_user, libelle="Pas à moi")
    client = Client()
    response = client.post("/accounts/login/", {"username": "alice", "password": "x"})
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/").content.decode()
    assert page.index("En cours") < page.index("En pause")
    assert "Pas à moi" not in page
    assert "Switch to this" in page  # one may run at a time: the paused one offers a switch
    assert "/admin/" not in page  # not staff


@pytest.mark.parametrize("ending", list(SESSION_ENDINGS))
def test_a_session_ends_on_the_page_when_its_user_changes_password_or_is_deactivated(alice, user, ending):
    assert alice.get("/").status_code == 200
    SESSION_ENDINGS[ending](user)
    response = alice.get("/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/"


def test_one_click_transitions_and_create(alice, user, projet):
    assert alice.post("/fiches/new", {"projet": projet.pk, "libelle": "Réunion", "start": "on"}).status_code == 302
    fiche = FicheTemps.objects.get(libelle="Réunion")
    assert fiche.etat == Etat.EN_CALCUL
    other = fiches.create_fiche(projet_id=projet.pk, actor=user, libelle="Autre")
    alice.post(f"/fiches/{other.pk}/switch", {"from": fiche.pk})
    assert FicheTemps.objects.get(pk=other.pk).etat == Etat.EN_CALCUL
    alice.post(f"/fiches/{other.pk}/pause")
    alice.post(f"/fiches/{other.pk}/finish")
    assert FicheTemps.objects.get(pk=other.pk).etat == Etat.TERMINEE


def test_a_refusal_is_shown_and_changes_nothing(alice, user, projet):
    running = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    other = fiches.create_fiche(projet_id=projet.pk, actor=user)
    response = alice.post(f"/fiches/{other.pk}/start", follow=True)
    assert f"Fiche {running.pk} is already running" in response.content.decode()
    assert FicheTemps.objects.get(pk=other.pk).etat == Etat.EN_PAUSE
    refused = alice.post(f"/fiches/{other.pk}/start", HTTP_X_REQUESTED_WITH="fetch")
    assert refused.status_code == 409 and "already running" in refused.json()["error"]


@pytest.mark.parametrize(
    "data, text",
    [
        ({"projet": ""}, "Choose a project."),
        ({"projet": "x"}, "Choose a project."),
        ({"projet": "999999"}, "does not exist"),
        ({"projet": "INACTIVE"}, "is not active"),
        ({"projet": "PROJET", "libelle": "x" * 201}, "too long"),
    ],
)
def test_bad_creations_are_explained_and_create_nothing(alice, projet, data, text):
    inactive = Projet.objects.create(designation="Fermé", actif=False)
    data = {key: {"PROJET": projet.pk, "INACTIVE": inactive.pk}.get(value, value) for key, value in data.items()}
    response = alice.post("/fiches/new", data, follow=True)
    assert text in response.content.decode()
    assert not FicheTemps.objects.exists()


def test_someone_elses_fiche_cannot_be_moved_from_the_page(alice, other_user, projet):
    theirs = fiches.create_fiche(projet_id=projet.pk, actor=other_user, start=True)
    response = alice.post(f"/fiches/{theirs.pk}/pause", follow=True)
    assert "does not exist" in response.content.decode()
    assert FicheTemps.objects.get(pk=theirs.pk).etat == Etat.EN_CALCUL


def test_stop_at_an_earlier_local_time(alice, user, projet, settings):
    settings.TIME_ZONE = "Europe/Paris"
    fiche = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    local_start = fiche.en_calcul_depuis.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    response = alice.post(f"/fiches/{fiche.pk}/pause", {"at": local_start.strftime("%Y-%m-%dT%H:%M:%S.%f")})
    assert response.status_code == 302
    paused = FicheTemps.objects.get(pk=fiche.pk)
    assert paused.etat == Etat.EN_PAUSE
    assert paused.events.last().at == fiche.en_calcul_depuis
    bad = alice.post(f"/fiches/{fiche.pk}/pause", {"at": "tomorrow"}, follow=True)
    assert "is not a date and time" in bad.content.decode() or "Cannot pause" in bad.content.decode()


def test_tokens_are_made_shown_once_and_revoked_from_the_page(alice, user):
    response = alice.post("/tokens/new", {"name": "script", "scope": "write", "days": "30"}, follow=True)
    page = response.content.decode()
    token = ApiToken.objects.get()
    assert "shown this once" in page and f"fdt_{token.prefix}_" in page
    assert f"fdt_{token.prefix}_" not in alice.get("/").content.decode()  # never again
    alice.post(f"/tokens/{token.pk}/revoke")
    assert ApiToken.objects.get().revoked_at is not None


def test_the_page_speaks_french(alice, user, projet):
    fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    page = alice.get("/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert 'lang="fr"' in page
    for text in ("Mes fiches", "Aujourd\u2019hui", "Cette semaine", "Terminer", "J\u2019ai arrêté plus tôt…"):
        assert text in page, text


def test_staff_get_a_link_to_the_admin(staff):
    client = Client()
    client.force_login(staff)
    assert 'href="/admin/"' in client.get("/").content.decode()


def test_refusals_speak_the_users_language(alice, user, projet):
    running = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    other = fiches.create_fiche(projet_id=projet.pk, actor=user)
    page = alice.post(f"/fiches/{other.pk}/start", follow=True, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert f"La fiche n°{running.pk} est déjà en calcul" in page
    assert f"· #{running.pk}" in page  # the number the message names is on the card


@pytest.mark.parametrize(
    "case, status, code_text",
    [
        ("not_found", 404, "does not exist"),
        ("wrong_state", 409, "it is finished"),
        ("limit_reached", 409, "already running"),
        ("invalid", 400, "is not a date and time"),
    ],
)
def test_the_pages_script_gets_each_refusal_with_its_codes_status(
    alice, user, other_user, projet, case, status, code_text
):
    mine = make_fiche(projet, user)
    url = f"/fiches/{mine.pk}/start"
    data = {}
    if case == "not_found":
        url = f"/fiches/{make_fiche(projet, other_user).pk}/start"
    elif case == "wrong_state":
        fiches.finish_fiche(fiche_id=mine.pk, actor=user)
    elif case == "limit_reached":
        running_fiche(projet, user)
    else:
        fiches.start_fiche(fiche_id=mine.pk, actor=user)
        url, data = f"/fiches/{mine.pk}/pause", {"at": "yesterday at noon"}
    response = alice.post(url, data, HTTP_X_REQUESTED_WITH="fetch")
    assert response.status_code == status
    assert code_text in response.json()["error"]


def test_an_export_refused_answers_its_codes_status(alice, other_user):
    assert alice.get("/reports/export.csv?from=2026-13-01").status_code == 400
    assert alice.get(f"/reports/export.csv?owner={other_user.pk}").status_code == 403


def test_the_refusals_of_reads_and_tokens_speak_the_users_language(alice, user):
    response = alice.post("/tokens/new", {"name": "", "days": "30"}, follow=True, HTTP_ACCEPT_LANGUAGE="fr")
    assert "Un jeton a besoin d’un nom de 1 à 100 caractères." in response.content.decode()  # noqa: RUF001
    page = alice.get("/api/fiches/?page=9", HTTP_ACCEPT_LANGUAGE="fr")
    assert page.status_code == 404 and page.json() == {
        "error": "La page 9 n’existe pas ; il y en a 1.",  # noqa: RUF001
        "code": "not_found",
    }


def test_a_person_sets_their_time_zone_from_the_page(alice, user):
    response = alice.post("/time-zone", {"time_zone": "America/Montreal"}, follow=True)
    assert "Time zone saved." in response.content.decode()
    assert Profile.objects.get(user=user).time_zone == "America/Montreal"
    refused = alice.post("/time-zone", {"time_zone": "Mars/Olympus"}, follow=True)
    assert "is not a time zone" in refused.content.decode()
    assert Profile.objects.get(user=user).time_zone == "America/Montreal"


@pytest.mark.parametrize("value", ["abc", "²", "-1", "1e3", "1" * 19])
def test_ids_that_are_not_ascii_digits_are_refused_in_the_products_words(alice, user, projet, value):
    created = alice.post("/fiches/new", {"projet": value}, HTTP_X_REQUESTED_WITH="fetch")
    assert (created.status_code, created.json()["error"]) == (400, "Choose a project.")
    running = running_fiche(projet, user)
    switched = alice.post(f"/fiches/{running.pk}/switch", {"from": value}, HTTP_X_REQUESTED_WITH="fetch")
    assert switched.status_code == 400 and "is not an id" in switched.json()["error"]
    exported = alice.get("/reports/export.csv", {"owner": value})
    assert (exported.status_code, exported.json()["error"]) == (400, "'owner' must be a person's id.")


# Defects: times in the person's zone, "I stopped earlier…" bounded, a new token in a box to copy.


class _Fields(HTMLParser):
    """Every element's attributes by id, and the text inside each element with a class, from a page."""

    def __init__(self):
        super().__init__()
        self.by_id = {}

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if "id" in attributes:
            self.by_id[attributes["id"]] = {"tag": tag, **attributes}


def elements(page: str) -> dict:
    parser = _Fields()
    parser.feed(page)
    return parser.by_id


def started_at(fiche, instant):
    """Pretend the running fiche's current stretch started at ``instant``."""
    FicheTemps.objects.filter(pk=fiche.pk).update(en_calcul_depuis=instant, compte_jusqua=instant)
    Stretch.objects.filter(fiche_id=fiche.pk, ended_at__isnull=True).update(started_at=instant)


def test_a_running_fiches_start_is_shown_in_the_persons_zone_and_labelled_with_it(alice, user, projet, settings):
    settings.TIME_ZONE = "UTC"
    profiles.set_time_zone(user=user, name="Europe/Paris")
    fiche = running_fiche(projet, user)
    start = (db_now() - timedelta(days=1)).replace(hour=1, minute=24, second=0, microsecond=0)
    started_at(fiche, start)
    page = alice.get("/").content.decode()
    local = start.astimezone(ZoneInfo("Europe/Paris")).strftime("%H:%M")
    assert f"since {local}" in page and "Europe/Paris" in page
    assert "since 01:24" not in page


def test_i_stopped_earlier_is_bounded_by_the_stretch_and_its_default_is_accepted(alice, user, projet, settings):
    settings.TIME_ZONE = "UTC"
    profiles.set_time_zone(user=user, name="Europe/Paris")
    fiche = running_fiche(projet, user)
    start = (db_now() - timedelta(seconds=30)).replace(microsecond=500_000)  # half-way through a second
    started_at(fiche, start)
    field = elements(alice.get("/").content.decode())[f"at-{fiche.pk}"]
    first_whole_second = (start + timedelta(seconds=0.5)).astimezone(ZoneInfo("Europe/Paris"))
    assert field["min"] == first_whole_second.strftime("%Y-%m-%dT%H:%M:%S")
    assert field["min"] <= field["value"] <= field["max"]
    response = alice.post(f"/fiches/{fiche.pk}/pause", {"at": field["value"]}, follow=True)
    assert "Paused." in response.content.decode()
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_PAUSE


def test_a_new_token_is_shown_once_in_a_box_of_its_own_with_a_copy_button(alice, user):
    response = alice.post("/tokens/new", {"name": "script", "scope": "read", "days": "30"}, follow=True)
    assert response.redirect_chain[-1][0] == "/settings"
    raw = elements(response.content.decode())["new-token"]
    token = ApiToken.objects.get()
    assert raw["tag"] == "input" and "readonly" in raw and raw["value"].startswith(f"fdt_{token.prefix}_")
    assert 'data-copy="new-token"' in response.content.decode()
    assert '<p class="message warning">Your new token' not in response.content.decode()
