"""
Stretches become people's time entries: each carries its owner, and on
PostgreSQL no two exclusive stretches of one owner may overlap.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# Stretches written before this migration that overlap another of their
# owner's (possible only while people ran several fiches at once) stay
# allowed to: they are marked not exclusive before the constraint is made.
NO_OVERLAP = """
ALTER TABLE timesheet_stretch ADD CONSTRAINT stretch_no_overlap
EXCLUDE USING gist (owner_id WITH =, tstzrange(started_at, ended_at, '[)') WITH &&)
WHERE (exclusive)
"""


def fill_owners(apps, schema_editor):
    Stretch = apps.get_model("timesheet", "Stretch")
    FicheTemps = apps.get_model("timesheet", "FicheTemps")
    owner = FicheTemps.objects.filter(pk=models.OuterRef("fiche_id")).values("owner_id")[:1]
    Stretch.objects.update(owner_id=models.Subquery(owner))
    ends_after = models.Q(ended_at__isnull=True) | models.Q(ended_at__gt=models.OuterRef("started_at"))
    others = Stretch.objects.filter(ends_after, owner_id=models.OuterRef("owner_id")).exclude(pk=models.OuterRef("pk"))
    # An open stretch runs on forever: any other that ends after it starts overlaps it.
    overlapped_open = models.Q(ended_at__isnull=True) & models.Exists(others)
    overlapped = models.Q(ended_at__isnull=False) & models.Exists(
        others.filter(started_at__lt=models.OuterRef("ended_at"))
    )
    Stretch.objects.filter(overlapped_open | overlapped).update(exclusive=False)


def checks_now(apps, schema_editor):
    # PostgreSQL: the foreign keys filled above are checked at commit; the
    # table cannot be altered while those checks are pending, so run them now.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def add_exclusion(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        schema_editor.execute(NO_OVERLAP)


def drop_exclusion(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE timesheet_stretch DROP CONSTRAINT IF EXISTS stretch_no_overlap")


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("timesheet", "0010_fiche_time_bounded"),
    ]

    operations = [
        migrations.AddField(
            model_name="stretch",
            name="owner",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="owner",
            ),
        ),
        migrations.AddField(
            model_name="stretch",
            name="exclusive",
            field=models.BooleanField(default=True, verbose_name="exclusive"),
        ),
        migrations.AddIndex(
            model_name="stretch",
            index=models.Index(fields=["owner", "started_at"], name="stretch_owner_started_idx"),
        ),
        migrations.RunPython(fill_owners, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(checks_now, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="stretch",
            name="owner",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="owner",
            ),
        ),
        migrations.RunPython(add_exclusion, drop_exclusion),
        migrations.AlterField(
            model_name="ficheevent",
            name="kind",
            field=models.CharField(
                choices=[
                    ("created", "created"),
                    ("started", "started"),
                    ("paused", "paused"),
                    ("finished", "finished"),
                    ("auto_stopped", "auto-stopped"),
                    ("adjusted", "adjusted"),
                    ("updated", "updated"),
                    ("entry_added", "entry added"),
                    ("entry_changed", "entry changed"),
                    ("entry_split", "entry split"),
                    ("entry_deleted", "entry deleted"),
                ],
                max_length=20,
                verbose_name="kind",
            ),
        ),
        migrations.AlterField(
            model_name="ficheevent",
            name="changes",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="For an update or an entry's edit: each changed field's old and new value.",
                verbose_name="changes",
            ),
        ),
    ]
