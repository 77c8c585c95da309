from django.db import migrations

FILLFACTOR = 80


def set_fillfactor(apps, schema_editor, value=FILLFACTOR):
    # Room on every page for the new row versions of a tick's UPDATE, so that
    # PostgreSQL writes them as heap-only tuples: no index entry, no bloat.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE timesheet_fichetemps SET (fillfactor = {int(value)})")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE timesheet_fichetemps RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("timesheet", "0001_initial")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor, elidable=False)]
