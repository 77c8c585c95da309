"""The one factory of the tests' people, projects, clients, teams and fiches; fiches are made through the services."""

from django.contrib.auth import get_user_model

from timesheet.domain import fiches
from timesheet.models import Client, FicheTemps, Projet, Team, TeamMembership


def person(username, **fields):
    """A user named ``username`` with the password "x" (``fields``: is_staff, is_superuser, ...)."""
    return get_user_model().objects.create_user(username, password="x", **fields)


def project(designation="Refonte", **fields):
    return Projet.objects.create(designation=designation, **fields)


def make_fiche(projet, owner, libelle="Travail", *, start=False, actor=None) -> FicheTemps:
    """A fiche of ``owner`` on ``projet``, made (and started, if asked) by ``actor`` (the owner by default)."""
    return fiches.create_fiche(
        projet_id=projet.pk, owner_id=owner.pk, actor=actor or owner, libelle=libelle, start=start
    )


def running_fiche(projet, owner, libelle="Travail", *, actor=None) -> FicheTemps:
    """A fiche of ``owner`` on ``projet``, started at once."""
    return make_fiche(projet, owner, libelle, start=True, actor=actor)


def client_of(name="ACME", **fields) -> Client:
    """A client named ``name`` (``fields``: actif)."""
    return Client.objects.create(name=name, **fields)


def team(name="Design", *, members=(), leads=(), projets=()) -> Team:
    """A team named ``name`` with ``members`` and ``leads`` (people), to which ``projets`` are restricted."""
    made = Team.objects.create(name=name)
    for member in members:
        TeamMembership.objects.create(team=made, user=member)
    for lead in leads:
        TeamMembership.objects.create(team=made, user=lead, lead=True)
    made.projets.add(*projets)
    return made
