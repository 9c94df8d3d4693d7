from __future__ import annotations

from datetime import timedelta
from typing import cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from portal.commands import utf8_argument
from portal.models import ACCESS_TOKEN_MAX_DAYS, AccessToken
from portal.services import issue_token


class Command(BaseCommand):
    help = "Print a new personal access token for USERNAME on the last line (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for, e.g. 'laptop CLI'.")
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help=f"Expire the token after this many days (default ACCESS_TOKEN_DEFAULT_DAYS, "
            f"at most {ACCESS_TOKEN_MAX_DAYS}); every token expires.",
        )

    def handle(self, username, name, days, **options):
        username, name = utf8_argument(username, "The user name"), utf8_argument(name, "--name")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user called {username!r}. Create it first (manage.py createsuperuser).")
        if not user.is_active:
            raise CommandError(f"The user {username!r} is inactive; activate it before issuing a token.")
        longest = cast(int, AccessToken._meta.get_field("name").max_length)
        if name and len(name) > longest:
            raise CommandError(f"--name is {len(name)} characters long; a token's name holds at most {longest}.")
        if days is None:
            days = settings.ACCESS_TOKEN_DEFAULT_DAYS
        if not 1 <= days <= ACCESS_TOKEN_MAX_DAYS:
            raise CommandError(f"--days must be from 1 to {ACCESS_TOKEN_MAX_DAYS}; every token expires.")
        expires_at = timezone.now() + timedelta(days=days)
        token, raw = issue_token(
            user=user, name=name or "issued by command", expires_at=expires_at, via="manage.py issue_access_token"
        )
        self.stderr.write(
            f"Token {token.lookup_id} for {username} expires {expires_at:%Y-%m-%d %H:%M} UTC. "
            "Store it now; it is not shown again."
        )
        self.stdout.write(raw)
