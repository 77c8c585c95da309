from django.db import migrations

FILLFACTOR = 50


def set_fillfactor(apps, schema_editor, value=FILLFACTOR):
    # Every tick writes a new version of each running row. With room on its
    # page for a second version of every row, PostgreSQL writes them all as
    # heap-only tuples (no index entry) and prunes the previous tick's, so the
    # table keeps its size. At 80, pages overflow until the table has doubled
    # anyway, through non-HOT updates.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE timesheet_fichetemps SET (fillfactor = {int(value)})")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE timesheet_fichetemps RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("timesheet", "0001_initial")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor, elidable=False)]
