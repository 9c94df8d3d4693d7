from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from portal.services import issue_token


class Command(BaseCommand):
    help = "Print a new personal access token for USERNAME on the last line (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for, e.g. 'laptop CLI'.")
        parser.add_argument("--days", type=int, default=None, help="Expire the token after this many days.")

    def handle(self, username, name, days, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user called {username!r}. Create it first (manage.py createsuperuser).")
        if not user.is_active:
            raise CommandError(f"The user {username!r} is inactive; activate it before issuing a token.")
        if days is not None and days < 1:
            raise CommandError("--days must be 1 or more.")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        token, raw = issue_token(user=user, name=name or "issued by command", expires_at=expires_at)
        expiry = f"expires {expires_at:%Y-%m-%d}" if expires_at else "does not expire"
        self.stderr.write(f"Token {token.lookup_id} for {username} ({expiry}). Store it now; it is not shown again.")
        self.stdout.write(raw)
