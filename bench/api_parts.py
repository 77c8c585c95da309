#!/usr/bin/env python
"""
Where the API's own cost goes: whole requests through the ASGI application
in this process (no network), the floor's among them, then each part of the
work the API adds, timed alone, warm, in one thread.

Whole requests go, in turns, through the project's application, whose
requests reuse threads (``timesheet.web.request_threads``), and through Django's
handler alone, which starts a thread for each: what keeping them saves, one
request at a time and four at once.

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
import copy
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import credential_headers, database_label, django_setup, load_average, scratch_dir, sessions_for
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
    credentials = [
        (name.lower().encode(), value.encode()) for name, value in credential_headers(session=session, token=token)
    ]
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
    Median milliseconds of each endpoint and of the floor, one request at a
    time and four at once, through the project's application (threads kept
    for requests) and through Django's handler alone (a thread started for
    each request), measured in turns; return ({(name, way, at_once): ms},
    requests measured one at a time, and four at once).
    """
    from bench.floor_app import application
    from timesheet.web.request_threads import RequestThreads

    assert isinstance(application.app, RequestThreads), "settings.asgi wraps Django's handler in RequestThreads"
    ways = {"kept": application, "per request": copy.copy(application)}
    ways["per request"].app = application.app.app  # the same BodyLimit around Django's handler alone

    steps = itertools.count()

    def transition(_i):  # start, pause, start, ... whichever way asks: the fiche ends paused, as it began
        return f"/api/fiches/{fiche_id}/{('start', 'pause')[next(steps) % 2]}"

    cases = {
        "floor (bare async view)": ("GET", lambda i: "/__floor__/", {"token": token}),
        "list (page of 50)": ("GET", lambda i: "/api/fiches/", {"token": token}),
        "detail": ("GET", lambda i: f"/api/fiches/{fiche_id}/", {"token": token}),
        "start or pause": ("POST", transition, {"token": token}),
        "start or pause, signed in by a session": ("POST", transition, {"session": session}),
    }

    async def one(way, method, path, credentials, times):
        started = time.perf_counter()
        status = await asgi_request(ways[way], method, path, **credentials)
        times.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status}")

    def in_turns(i):  # each way first every other time
        return list(ways) if i % 2 else list(reversed(ways))

    times = {(name, way, at_once): [] for name in cases for way in ways for at_once in (1, 4)}
    rounds = 5
    per_round = -(-repeats // rounds)
    batches = max(1, per_round // 4)
    for round_ in range(rounds + 1):  # in turns, so that a noisy neighbour slows all alike; the first warms up
        for name, (method, path_of, credentials) in cases.items():
            for i in range(per_round):
                for way in in_turns(i):
                    sink = times[name, way, 1] if round_ else []
                    await one(way, method, path_of(i), credentials, sink)
            if name.startswith("start"):  # one fiche: its transitions cannot run four at once
                continue
            for i in range(batches):
                for way in in_turns(i):
                    sink = times[name, way, 4] if round_ else []
                    await asyncio.gather(*(one(way, method, path_of(i), credentials, sink) for _ in range(4)))
    medians = {key: statistics.median(values) * 1000 for key, values in times.items() if values}
    return medians, per_round * rounds, batches * 4 * rounds


def parts(raw_token, fiche_id, repeats):
    """Each part of the API's work alone; return [(name, ms, SQL statements it runs, COMMITs aside)]."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import RequestFactory

    from timesheet.domain import fiches, selectors, tokens
    from timesheet.domain.serialize import fiche_rows, row_json
    from timesheet.models import sees_everyones_fiches
    from timesheet.web.api.common import rendered

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
        return rendered(request, {"count": page.count, "results": [row_json(row) for row in page.items]})

    def start_then_pause():
        fiches.start_fiche(fiche_id=fiche_id, actor=user)
        fiches.pause_fiche(fiche_id=fiche_id, actor=user)

    measures = [
        ("token: found and checked", lambda: tokens.authenticate(raw_token)),
        ("permission rule, read", fresh_rule),
        ("list: count and page of 50", lambda: selectors.fiche_page(user=user, number=1, size=50)),
        ("  page: ORM build and compile, not run (now prepared)", page_sql),
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
    whole, measured, measured_at_once = asyncio.run(whole_requests(token, session, fiche_id, args.repeats))
    floor_name = "floor (bare async view)"
    print(
        f"whole requests through the ASGI application (no network), {measured} of each one at a time, "
        f"{measured_at_once} four at once; threads kept for requests (the project's) and a thread "
        "started for each (Django's handler alone); medians in ms, and over the floor"
    )
    print(f"  {'':<40}{'at once':>8}{'ms: kept':>10}{'per request':>13}{'floors: kept':>14}{'per request':>13}")
    for at_once in (1, 4):
        for name in dict.fromkeys(name for name, _way, _n in whole):
            if (name, "kept", at_once) not in whole:
                continue
            cells = [whole[name, way, at_once] for way in ("kept", "per request")]
            line = f"  {name:<40}{at_once:>8}{cells[0]:>10.2f}{cells[1]:>13.2f}"
            if name != floor_name:
                floors = [whole[floor_name, way, at_once] for way in ("kept", "per request")]
                line += f"{cells[0] / floors[0]:>13.2f}x{cells[1] / floors[1]:>12.2f}x"
            print(line)
    heading = f"parts of the API's own work, each alone in one thread, {args.repeats} runs"
    print(f"{heading:<62}{'ms':>6}   statements (COMMITs aside)")
    for name, ms, count in parts(token, fiche_id, args.repeats):
        print(f"  {name:<60}{ms:>6.2f}{count:>9}")


if __name__ == "__main__":
    main()
