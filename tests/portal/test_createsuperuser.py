"""The README's first-account command keeps the portal's rules for names and addresses (README, Accounts)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def first_account(monkeypatch):
    def run(username: str, email: str) -> None:
        monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", username)
        monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", email)
        monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-enough-password-42")
        call_command("createsuperuser", "--noinput")

    return run


def test_the_first_account_is_made_as_the_readme_says(first_account):
    first_account("admin", "admin@example.com")
    assert get_user_model().objects.get(username="admin").is_superuser


def test_a_name_taken_but_for_case_is_refused(first_account):
    make_user("admin")
    with pytest.raises(CommandError, match="An account is called ADMIN already, but for case"):
        first_account("ADMIN", "boss@example.com")
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["admin"]


def test_an_address_another_account_has_is_refused(first_account):
    make_user("admin")  # admin@example.com
    with pytest.raises(CommandError, match=r"Another account has the address ADMIN@example\.com"):
        first_account("boss", "ADMIN@example.com")
    assert not get_user_model().objects.filter(username="boss").exists()


class Terminal:
    def isatty(self):
        return True


def test_an_address_another_account_has_is_refused_when_given_as_an_option_to_the_questions(monkeypatch):
    """Interactive, with --email on the command line: Django takes the option without asking for it."""
    make_user("admin")  # admin@example.com
    answers = iter(["a-long-enough-password-42", "a-long-enough-password-42"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    monkeypatch.setattr("builtins.input", lambda prompt="": "boss@example.com")  # any question asked again
    with pytest.raises(CommandError, match=r"Another account has the address ADMIN@example\.com"):
        call_command(
            "createsuperuser", "--username", "boss", "--email", "ADMIN@example.com", stdin=Terminal(), interactive=True
        )
    assert not get_user_model().objects.filter(username="boss").exists()


def test_the_address_question_refuses_an_address_another_account_has_and_asks_again(monkeypatch, capsys):
    """Interactive, no --email: the first answer is another account's address (in other case), refused with a
    sentence; the second is free."""
    make_user("admin")  # admin@example.com
    answers = iter(["ADMIN@example.com", "boss@example.com"])
    passwords = iter(["a-long-enough-password-42", "a-long-enough-password-42"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(passwords))
    call_command("createsuperuser", "--username", "boss", stdin=Terminal(), interactive=True)
    assert get_user_model().objects.get(username="boss").email == "boss@example.com"
    assert "Another account has the address ADMIN@example.com" in capsys.readouterr().err
