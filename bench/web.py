#!/usr/bin/env python
"""
The API's own cost: the project's list, detail and transition endpoints
against a floor (a bare async Django view behind the same middleware, in a
second uvicorn process), at 1 and 4 clients, measured in turns in one run.

    python bench/web.py                     # 100,000 fiches, 4 people with 5,000 each
    python bench/web.py --requests 200
    DATABASE_URL=postgres://... python bench/web.py   # an empty database

Prints, for each endpoint and number of clients, the p50, what it adds to
the floor's p50 (the API's own cost, in milliseconds) and the ratio of the
two p50s. (Its old target, 2x, is retired: bench/peer.py measures the API
against a real peer.)
"""

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import database_label, django_setup, load_average, percentile, request, scratch_dir, uvicorn


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fiches", type=int, default=100_000, help="fiches in the table (default: %(default)s)")
    parser.add_argument("--own", type=int, default=5_000, help="fiches of each client's person (default: %(default)s)")
    parser.add_argument(
        "--requests", type=int, default=400, help="requests per client and measure (default: %(default)s)"
    )
    parser.add_argument("--rounds", type=int, default=4, help="turns between floor and project (default: %(default)s)")
    return parser.parse_args()


def setup(fiche_count, own, people):
    """The fiches, ``own`` of them for each of ``people`` with a write token; return [(token, fiche id)]."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from timesheet.domain.tokens import create_token
    from timesheet.models import ApiToken, FicheTemps, Projet

    User = get_user_model()
    with transaction.atomic():
        projet = Projet.objects.create(designation="Bench")
        users = User.objects.bulk_create(User(username=f"person{i}", password="!") for i in range(people + 1))
        others = users[-1]
        owners = [user for user in users[:people] for _ in range(own)]
        owners += [others] * max(0, fiche_count - len(owners))
        FicheTemps.objects.bulk_create(
            (FicheTemps(projet=projet, owner=owner, libelle=f"fiche {i}") for i, owner in enumerate(owners)),
            batch_size=5000,
        )
    clients = []
    for user in users[:people]:
        _token, secret = create_token(user=user, name="bench", scope=ApiToken.Scope.WRITE)
        clients.append((secret, FicheTemps.objects.filter(owner=user).order_by("pk").values_list("pk", flat=True)[0]))
    return clients


async def measure(port, clients, count, path_of, method="GET"):
    """``count`` requests per client, the clients at once; return the latencies."""
    latencies = []

    async def client(index, token, fiche_id):
        for i in range(count):
            path = path_of(fiche_id, i)
            status, body, elapsed = await request(port, method, path, token=token)
            if status != 200:
                raise RuntimeError(f"{method} {path}: {status} {body[:200]!r}")
            latencies.append(elapsed)

    await asyncio.gather(*(client(index, token, fiche_id) for index, (token, fiche_id) in enumerate(clients)))
    return latencies


ENDPOINTS = {
    "list": ("GET", lambda fiche_id, i: "/api/fiches/"),
    "detail": ("GET", lambda fiche_id, i: f"/api/fiches/{fiche_id}/"),
    "transition": ("POST", lambda fiche_id, i: f"/api/fiches/{fiche_id}/{('start', 'pause')[i % 2]}"),
}


async def scenario(project_port, floor_port, clients, args):
    results = {}
    for endpoint, (method, path_of) in ENDPOINTS.items():
        for n in (1, 4):
            samples = {"floor": [], "project": []}
            for _ in range(args.rounds):  # in turns, so that a noisy neighbour slows both alike
                samples["floor"] += await measure(
                    floor_port, clients[:n], args.requests // args.rounds, lambda fiche_id, i: "/__floor__/", method
                )
                # Transitions end paused: every run starts from the same state.
                samples["project"] += await measure(
                    project_port, clients[:n], args.requests // args.rounds, path_of, method
                )
            results[endpoint, n] = samples
    return results


def main():
    args = parse_args()
    args.requests -= args.requests % (2 * args.rounds)  # whole start-pause pairs in every turn
    env = django_setup(
        {
            "DJANGO_SETTINGS_MODULE": "settings",
            "DJANGO_DATA_DIR": scratch_dir("bench-web-"),
            "DJANGO_DEBUG": "0",
            "API_TOKEN_RATE": "1000000/s",
        }
    )
    clients = setup(args.fiches, args.own, 4)
    print(
        f"{database_label()}; {args.fiches:,} fiches, {args.own:,} of each client's; one uvicorn process each "
        f"for the project and the floor; {args.requests} requests per client and measure; "
        f"load average {load_average():.2f} at the start"
    )
    with (
        uvicorn("settings.asgi:application", env) as (project_port, _),
        uvicorn("bench.floor_app:application", env) as (floor_port, _),
    ):
        results = asyncio.run(scenario(project_port, floor_port, clients, args))
    print(f"{'endpoint':<12}{'clients':>8}{'floor p50':>11}{'p50 ms':>9}{'p99 ms':>9}{'added':>8}{'ratio':>8}")
    worst = 0
    for (endpoint, n), samples in results.items():
        floor, project = percentile(samples["floor"], 0.5), percentile(samples["project"], 0.5)
        ratio = project / floor
        worst = max(worst, ratio)
        print(
            f"{endpoint:<12}{n:>8}{floor * 1000:>11.2f}{project * 1000:>9.2f}"
            f"{percentile(samples['project'], 0.99) * 1000:>9.2f}{(project - floor) * 1000:>+8.2f}{ratio:>7.2f}x"
        )
    print(f"worst ratio to the floor: {worst:.2f}x (no target: bench/peer.py sets the API's)")


if __name__ == "__main__":
    main()
