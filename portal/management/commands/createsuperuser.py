"""Django's createsuperuser, with the portal's rules for names and addresses (README, Accounts).

A user name taken but for case (ADMIN beside admin) and an address another account has are refused here as on
every other way an account is made or changed: two names alike would hand keys to the wrong one in "Assign to",
and a reset link for a shared address would reach the other account's owner.
"""

from __future__ import annotations

import os

from django.contrib.auth.management.commands import createsuperuser
from django.core.management.base import CommandError

from portal.invitations import same_address, username_taken


class Command(createsuperuser.Command):
    def _validate_username(self, username, verbose_field_name, database):
        if error := super()._validate_username(username, verbose_field_name, database):  # type: ignore[misc]
            return error
        if username_taken(username):
            return f"Error: An account is called {username} already, but for case: choose another {verbose_field_name}."
        return None

    def _address_taken(self, email: str, database: str) -> str | None:
        if email and self.UserModel._default_manager.db_manager(database).filter(same_address("email", email)).exists():
            return f"Error: Another account has the address {email}: each account needs an address of its own."
        return None

    def get_input_data(self, field, message, default=None):
        value = super().get_input_data(field, message, default)
        if field.name == "email" and value and (error := self._address_taken(value, self.database)):
            self.stderr.write(error)
            return None  # asked again, as for any refused answer
        return value

    def handle(self, *args, **options):
        self.database = options["database"]
        # Given as an option (--email), the address is cleaned by Django without get_input_data, in interactive
        # mode too: it is checked here.
        email = options.get("email") or ""
        if not options["interactive"]:
            email = email or os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
        if error := self._address_taken(email.strip(), self.database):
            raise CommandError(error)
        return super().handle(*args, **options)
