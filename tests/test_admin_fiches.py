"""The fiche admin's actions over several fiches: each fiche's outcome said once, by name, like refusals together."""

import pytest

from tests.factories import make_fiche, running_fiche
from timesheet.domain import fiches
from timesheet.models import Etat, FicheTemps

pytestmark = pytest.mark.django_db

LIST = "/admin/timesheet/fichetemps/"


def act(client, action, selected):
    response = client.post(LIST, {"action": action, "_selected_action": [f.pk for f in selected]}, follow=True)
    return [(message.level_tag, str(message)) for message in response.context["messages"]]


def test_starts_refused_for_one_reason_are_one_message_naming_each_fiche(superuser_client, projet, user, settings):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 1
    running = running_fiche(projet, user, "Maquettes")
    waiting = [make_fiche(projet, user, label) for label in ("Écriture", "Relecture", "Mise en page", "")]
    shown = act(superuser_client, "start", waiting)
    assert len(shown) == 1, shown
    level, message = shown[0]
    assert level == "warning"
    names = ", ".join(f"#{f.pk} {f.libelle}".strip() for f in waiting)
    assert message.startswith(f"{names}: Cannot start: Fiche {running.pk} is already running")
    assert message.count(f"Fiche {running.pk} is already running") == 1
    assert all(FicheTemps.objects.get(pk=f.pk).etat == Etat.EN_PAUSE for f in waiting)


def test_successes_are_counted_once_and_each_refusal_names_its_fiche(superuser_client, projet, user, other_user):
    first = running_fiche(projet, user, "Écriture")
    second = running_fiche(projet, other_user, "Relecture")
    done = [make_fiche(projet, user, label) for label in ("Fini", "Fini aussi")]
    paused = make_fiche(projet, other_user, "En pause")
    for fiche in done:
        fiches.finish_fiche(fiche_id=fiche.pk, actor=user)
    shown = act(superuser_client, "pause", [first, second, *done, paused])
    assert ("success", "2 fiches paused.") in shown
    refusals = [message for level, message in shown if level == "warning"]
    assert sorted(refusals) == sorted(
        [
            f"#{done[0].pk} Fini, #{done[1].pk} Fini aussi: Cannot pause: they are finished.",
            f"#{paused.pk} En pause: Cannot pause: it is paused.",
        ]
    )
    assert len(shown) == 3
    for fiche in (first, second, *done, paused):
        assert sum(f"#{fiche.pk} " in message for _, message in shown if message != "2 fiches paused.") <= 1


def test_a_long_selection_names_the_first_fiches_and_counts_the_rest(superuser_client, projet, user):
    done = [make_fiche(projet, user, f"F{i}") for i in range(14)]
    for fiche in done:
        fiches.finish_fiche(fiche_id=fiche.pk, actor=user)
    ((_level, message),) = act(superuser_client, "finish", done)
    assert message.startswith(", ".join(f"#{f.pk} {f.libelle}" for f in done[:10]) + " and 4 more: Cannot finish:")
    assert message.endswith("they are finished.")
