import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from timesheet.domain.fiches import create_fiche
from timesheet.models import FicheTemps, Projet, Team, TeamMembership

TEAM = "Produit"
PROJETS = ["Refonte du site", "Application mobile", "Support client"]
FICHES = [
    # (project, label, started at once)
    ("Refonte du site", "Maquettes", True),
    ("Refonte du site", "Intégration", False),
    ("Application mobile", "Écran de connexion", False),
    ("Support client", "Tickets du jour", False),
]


class Command(BaseCommand):
    help = (
        "Add demo projects and fiches (one running) for the non-staff user 'demo', and a staff account "
        "'admin', lead of demo's team (so that it decides demo's weeks); each new account's generated password "
        "is printed once; existing data is left as it is."
    )

    def account(self, username, *, staff):
        """Make the account with a generated password shown once, unless it exists; return it."""
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is not None:
            self.stdout.write(f"Account '{username}' exists (python manage.py changepassword {username} to reset it).")
            return user
        password = secrets.token_urlsafe(12)
        if staff:
            user = User.objects.create_superuser(username, password=password)
        else:
            user = User.objects.create_user(username, password=password, first_name=username.title())
        kind = "Staff account" if staff else "Account"
        self.stdout.write(self.style.SUCCESS(f"{kind} created: {username} / {password}  (shown only this once)"))
        return user

    def handle(self, *args, **options):
        admin = self.account("admin", staff=True)
        with transaction.atomic():
            user = self.account("demo", staff=False)
            team, _made = Team.objects.get_or_create(name=TEAM)
            TeamMembership.objects.get_or_create(team=team, user=user)
            TeamMembership.objects.get_or_create(team=team, user=admin, defaults={"lead": True})
            projets = {designation: Projet.objects.get_or_create(designation=designation)[0] for designation in PROJETS}
            if FicheTemps.objects.filter(owner=user).exists():
                self.stdout.write("Demo data already present.")
                return
            for designation, libelle, start in FICHES:
                create_fiche(
                    projet_id=projets[designation].pk, owner_id=user.pk, actor=user, libelle=libelle, start=start
                )
        running = FicheTemps.objects.running().filter(owner=user).count()
        self.stdout.write(
            self.style.SUCCESS(f"Demo data added: {len(PROJETS)} projects, {len(FICHES)} fiches, {running} running.")
        )
