"""Fill a database with a large portal: 5,000 users, 200 teams, 20,000 keys, 20,000 assignments
and 1,000,000 audit events (a valid hash chain), with bulk inserts.

    .venv/bin/python -m bench.seed_large [--db data/bench-large.sqlite3] [--events 1000000]
    .venv/bin/python -m bench.seed_large --database-url postgres://.../portal_large   # an empty database

bench/pages.py then times the connections page and the audit list on it.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import timedelta
from pathlib import Path

from bench._setup import ROOT, django_on

DEFAULT_DB = ROOT / "data" / "bench-large.sqlite3"


def seed(users: int, teams: int, keys: int, events: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from gateways.models import Assignment, Gateway, GatewayKey
    from portal import audit_chain
    from portal.models import Action, AuditChainHead, AuditEvent, Membership, Team

    User = get_user_model()
    rng = random.Random(7)
    now = timezone.now()
    gateways = list(Gateway.objects.all())
    with transaction.atomic():
        User.objects.bulk_create(
            [User(username=f"user{i:05d}", password="!", is_staff=(i == 0)) for i in range(users)], batch_size=2000
        )
        Team.objects.bulk_create([Team(name=f"Team {i}", slug=f"team-{i:03d}") for i in range(teams)])
        all_users = list(User.objects.order_by("id"))
        all_teams = list(Team.objects.order_by("id"))
        members_of = {team.id: [] for team in all_teams}
        memberships = []
        for index, user in enumerate(all_users):
            team = all_teams[index % teams]
            role = "admin" if index < teams else ("auditor" if index % 50 == 1 else "member")
            memberships.append(Membership(team=team, user=user, role=role))
            members_of[team.id].append(user)
        Membership.objects.bulk_create(memberships, batch_size=2000)

        key_rows = []
        for i in range(keys):
            team = all_teams[i % teams]
            key = GatewayKey(
                team=team,
                gateway=gateways[i % len(gateways)],
                label=f"key {i}",
                created_at=now - timedelta(days=rng.randint(0, 400)),
                last_probe_verdict=rng.choice(["ok", "ok", "ok", "auth_failed", ""]),
                expires_at=now + timedelta(days=rng.randint(-30, 300)) if i % 7 == 0 else None,
                rotated_at=now - timedelta(days=i % 60) if i % 11 == 0 else None,  # the dashboard's rollouts
            )
            key.set_secret(f"sk-seed-{i:06d}-{rng.getrandbits(64):016x}")
            key_rows.append(key)
        GatewayKey.objects.bulk_create(key_rows, batch_size=1000)
        Assignment.objects.bulk_create(
            [
                Assignment(
                    key=key,
                    user=rng.choice(members_of[key.team_id]),
                    created_at=key.created_at,
                    last_download_at=key.created_at + timedelta(days=1) if rng.random() < 0.7 else None,
                    last_download_format=rng.choice(["bash", "zsh", "settings.json", "powershell"]),
                )
                for key in key_rows
            ],
            batch_size=2000,
            ignore_conflicts=True,
        )

    actions = [
        Action.CONFIG_DOWNLOADED,
        Action.PROBE_RUN,
        Action.SIGN_IN,
        Action.KEY_CREATED,
        Action.ASSIGNMENT_CREATED,
    ]
    prev = ""
    keyring = audit_chain.get_keyring()
    start = now - timedelta(days=365)
    step = timedelta(days=365) / max(events, 1)
    batch = []
    for i in range(events):
        user = all_users[rng.randrange(users)]
        team = all_teams[rng.randrange(teams)]
        event = AuditEvent(
            created_at=start + step * i,
            actor_id=user.id,
            actor_username=user.username,
            action=actions[i % len(actions)],
            team_id=team.id,
            team_slug=team.slug,
            gateway_slug=gateways[i % len(gateways)].slug,
            target=f"{i:012x}",
            ip_address="10.0.0.1",
            user_agent="bench",
            details={"n": i},
            prev_hash=prev,
        )
        event.seal(keyring)
        prev = event.hash
        batch.append(event)
        if len(batch) == 20000:
            with transaction.atomic():
                AuditEvent.objects.bulk_create(batch, batch_size=2000)
            batch = []
    if batch:
        AuditEvent.objects.bulk_create(batch, batch_size=2000)
    AuditChainHead.objects.update_or_create(pk=1, defaults={"last_hash": prev})
    if connection.vendor == "postgresql":  # autovacuum gets to a bulk load minutes later: plan on real figures now
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=DEFAULT_DB)
    parser.add_argument("--database-url", help="an empty PostgreSQL database to fill instead of the SQLite file")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--teams", type=int, default=200)
    parser.add_argument("--keys", type=int, default=20000)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    args.db.parent.mkdir(parents=True, exist_ok=True)
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("DATABASE_URL", None)  # the file named by --db, never the database the portal runs on
        args.db.unlink(missing_ok=True)
    started = time.perf_counter()
    django_on(args.db)
    seed(args.users, args.teams, args.keys, args.events)
    print(
        f"seeded {args.database_url or args.db} in {time.perf_counter() - started:.0f} s: {args.users} users, {args.teams} teams, "
        f"{args.keys} keys and assignments, {args.events} audit events"
    )


if __name__ == "__main__":
    main()
