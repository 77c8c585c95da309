# The constraints that the data of 0005 satisfies, in a transaction of their
# own (PostgreSQL refuses ALTER TABLE with the rows 0005 wrote still pending).
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("timesheet", "0005_running_slots_and_stretches"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="fichetemps",
            constraint=models.CheckConstraint(
                condition=models.Q(("etat", "en_calcul"), ("run_slot__isnull", True), _connector="OR"),
                name="fiche_slot_only_while_running",
            ),
        ),
        migrations.AddConstraint(
            model_name="fichetemps",
            constraint=models.UniqueConstraint(
                condition=models.Q(("etat", "en_calcul")),
                fields=("owner", "run_slot"),
                name="fiche_one_running_per_owner_slot",
                violation_error_message="This owner already runs as many fiches as allowed.",
            ),
        ),
        migrations.AddConstraint(
            model_name="stretch",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("ended_at__isnull", True), ("ended_at__gte", models.F("started_at")), _connector="OR"
                ),
                name="stretch_ends_after_it_starts",
            ),
        ),
        migrations.AddConstraint(
            model_name="stretch",
            constraint=models.UniqueConstraint(
                condition=models.Q(("ended_at__isnull", True)), fields=("fiche",), name="stretch_one_open_per_fiche"
            ),
        ),
    ]
