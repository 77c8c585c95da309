#!/usr/bin/env python
"""
Where the API's own cost goes: whole requests through the ASGI application
in this process (no network), the floor's among them, then each part of the
work the API adds, timed alone, warm, in one thread.

    python bench/api_parts.py                 # 100,000 fiches, 5,000 of the person's
    python bench/api_parts.py --repeats 100
    DATABASE_URL=postgres://... python bench/api_parts.py   # an empty database

Prints medians in milliseconds, and how many SQL statements each part runs. A whole
request's time above the floor's is what ``bench/web.py`` measures over
loopback; the parts say which of it is the ORM's and which Django's and
Ninja's own handling.
"""

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import CSRF, database_label, django_setup, load_average, scratch_dir, sessions_for
from bench.tick import statements
from bench.web import setup


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fiches", type=int, default=100_000, help="fiches in the table (default: %(default)s)")
    parser.add_argument("--own", type=int, default=5_000, help="fiches of the person's (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=300, help="runs of each measure (default: %(default)s)")
    return parser.parse_args()


def median_ms(function, repeats):
    """The median of ``repeats`` runs of ``function`` after a few unmeasured ones, in milliseconds."""
    for _ in range(10):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def asgi_request(application, method, path, *, token=None, session=None):
    """One request through ``application``, in this process, with a token or a session; return its status."""
    if token:
        credentials = [(b"authorization", f"Bearer {token}".encode())]
    else:
        credentials = [(b"cookie", f"sessionid={session}; csrftoken={CSRF}".encode()), (b"x-csrftoken", CSRF.encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *credentials],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client never leaves: the response ends the request

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    return sent[0]["status"]


async def whole_requests(token, session, fiche_id, repeats):
    """
    Median milliseconds of each endpoint and of the floor, measured in turns;
    return ({name: ms}, requests measured for each).
    """
    from bench.floor_app import application

    def transition(i):
        return f"/api/fiches/{fiche_id}/{('start', 'pause')[i % 2]}"

    cases = {
        "floor (bare async view)": ("GET", lambda i: "/__floor__/", {"token": token}),
        "list (page of 50)": ("GET", lambda i: "/api/fiches/", {"token": token}),
        "detail": ("GET", lambda i: f"/api/fiches/{fiche_id}/", {"token": token}),
        "start or pause": ("POST", transition, {"token": token}),
        "start or pause, signed in by a session": ("POST", transition, {"session": session}),
    }
    times = {name: [] for name in cases}
    rounds = 5
    per_round = -(-repeats // rounds)
    per_round += per_round % 2  # whole start-pause pairs: the fiche ends paused, as it began
    for round_ in range(rounds + 1):  # in turns, so that a noisy neighbour slows all alike; the first warms up
        for name, (method, path_of, credentials) in cases.items():
            for i in range(per_round):
                started = time.perf_counter()
                status = await asgi_request(application, method, path_of(i), **credentials)
                elapsed = time.perf_counter() - started
                if status != 200:
                    raise RuntimeError(f"{method} {path_of(i)}: {status}")
                if round_:
                    times[name].append(elapsed)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}, per_round * rounds


def parts(raw_token, fiche_id, repeats):
    """Each part of the API's work alone; return [(name, ms, SQL statements it runs, COMMITs aside)]."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import RequestFactory

    from timesheet import api, selectors, services, tokens
    from timesheet.models import sees_everyones_fiches
    from timesheet.serialize import fiche_rows, row_json

    user = tokens.authenticate(raw_token).user
    User = get_user_model()
    sees_everyones_fiches(user)  # known from here on: the list's parts below count and page, as after its first query

    def page_sql():
        return fiche_rows(selectors.fiche_list(user=user))[:50].query.sql_with_params()

    sql, params = page_sql()
    page = selectors.fiche_page(user=user, number=1, size=50)
    request = RequestFactory().get("/api/fiches/")

    def fresh_rule():  # a user as a request has it: nothing read yet
        return sees_everyones_fiches(User(pk=user.pk, is_active=True))

    def raw_page():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            cursor.fetchall()

    def rendered_page():
        return api.rendered(request, {"count": page.count, "results": [row_json(row) for row in page.items]})

    def start_then_pause():
        services.start_fiche(fiche_id=fiche_id, actor=user)
        services.pause_fiche(fiche_id=fiche_id, actor=user)

    measures = [
        ("token: found and checked", lambda: tokens.authenticate(raw_token)),
        ("permission rule, read", fresh_rule),
        ("list: count and page of 50", lambda: selectors.fiche_page(user=user, number=1, size=50)),
        ("  page: its queryset made and its SQL built, not run", page_sql),
        ("  page: the same SQL run raw", raw_page),
        ("list: 50 rows rendered as JSON", rendered_page),
        ("detail: one fiche's row", lambda: selectors.fiche_row(user=user, fiche_id=fiche_id)),
        ("start then pause (services)", start_then_pause),
    ]
    return [(name, median_ms(function, repeats), statements(function)) for name, function in measures]


def main():
    args = parse_args()
    django_setup(
        {
            "DJANGO_SETTINGS_MODULE": "settings",
            "DJANGO_DATA_DIR": scratch_dir("bench-api-parts-"),
            "DJANGO_DEBUG": "0",
            "API_TOKEN_RATE": "1000000/s",
        }
    )
    from django.contrib.auth import get_user_model

    [(token, fiche_id)] = setup(args.fiches, args.own, 1)
    [session] = sessions_for([get_user_model().objects.get(username="person0")])
    print(
        f"{database_label()}; {args.fiches:,} fiches, {args.own:,} of the person's; medians, warm, in one process; "
        f"load average {load_average():.2f} at the start"
    )
    whole, measured = asyncio.run(whole_requests(token, session, fiche_id, args.repeats))
    floor_name = "floor (bare async view)"
    floor = whole[floor_name]
    heading = f"whole requests through the ASGI application (no network), {measured} of each"
    print(f"{heading:<62}{'ms':>6}   over the floor")
    for name, ms in whole.items():
        print(f"  {name:<60}{ms:>6.2f}" + (f"{ms - floor:>+9.2f}  {ms / floor:.2f}x" if name != floor_name else ""))
    heading = f"parts of the API's own work, each alone in one thread, {args.repeats} runs"
    print(f"{heading:<62}{'ms':>6}   statements (COMMITs aside)")
    for name, ms, count in parts(token, fiche_id, args.repeats):
        print(f"  {name:<60}{ms:>6.2f}{count:>9}")


if __name__ == "__main__":
    main()
