"""Migrations over a database that already holds data, on SQLite and on PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE_ENTRIES = ("timesheet", "0010_fiche_time_bounded")


@pytest.mark.django_db(transaction=True)
def test_stretches_become_entries_with_their_owner_and_old_overlaps_kept_apart():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("timesheet")
    executor.migrate([BEFORE_ENTRIES])
    try:
        apps = executor.loader.project_state(BEFORE_ENTRIES).apps
        user = apps.get_model("auth", "User").objects.create(username="alice", password="x")
        projet = apps.get_model("timesheet", "Projet").objects.create(designation="P")
        fiche = apps.get_model("timesheet", "FicheTemps")
        first, second = (
            fiche.objects.create(projet=projet, owner=user, etat="terminee", temps_impute=timedelta(hours=2))
            for _ in range(2)
        )
        stretch = apps.get_model("timesheet", "Stretch")
        day = lambda d, h: datetime(2025, 1, d, h, tzinfo=UTC)  # noqa: E731
        # Two fiches ran at once on the 1st (several running fiches were allowed); the 2nd stands alone.
        stretch.objects.create(fiche=first, started_at=day(1, 9), ended_at=day(1, 11))
        stretch.objects.create(fiche=second, started_at=day(1, 10), ended_at=day(1, 11))
        alone = stretch.objects.create(fiche=second, started_at=day(2, 10), ended_at=day(2, 11))

        executor = MigrationExecutor(connection)
        executor.migrate(latest)

        with connection.cursor() as cursor:
            cursor.execute("SELECT id, owner_id, exclusive FROM timesheet_stretch ORDER BY started_at")
            rows = cursor.fetchall()
        assert [(owner, bool(exclusive)) for _id, owner, exclusive in rows] == [
            (user.pk, False),
            (user.pk, False),
            (user.pk, True),
        ]
        assert rows[2][0] == alone.pk
    finally:
        MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes("timesheet"))
