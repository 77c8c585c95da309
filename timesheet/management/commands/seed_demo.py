import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from timesheet.models import FicheTemps, Projet
from timesheet.services import create_fiche

PROJETS = ["Refonte du site", "Application mobile", "Support client"]
FICHES = [
    # (project, label, started at once)
    ("Refonte du site", "Maquettes", True),
    ("Refonte du site", "Intégration", False),
    ("Application mobile", "Écran de connexion", True),
    ("Support client", "Tickets du jour", True),
]


class Command(BaseCommand):
    help = (
        "Add demo projects and fiches (some running) for the user 'demo', and a staff account 'admin' "
        "whose generated password is printed once; existing data is left as it is."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", password=password)
            self.stdout.write(self.style.SUCCESS(f"Staff account created: admin / {password}  (shown only this once)"))
        else:
            self.stdout.write("Staff account 'admin' exists (python manage.py changepassword admin to reset it).")
        with transaction.atomic():
            user, _ = User.objects.get_or_create(username="demo", defaults={"first_name": "Demo"})
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
