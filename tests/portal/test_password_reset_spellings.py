"""The reset form finds an account by its address in either spelling of an internationalised domain, as invitations
and single sign-on do (README, Accounts), and mails the link to the address as the account stores it."""

from __future__ import annotations

import pytest

from tests.portal.test_anonymous_floods import ask_for_reset

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the mail goes in a thread


@pytest.mark.parametrize(
    "stored,typed",
    [
        ("bob@xn--bcher-kva.de", "bob@bücher.de"),  # invited as bob@bücher.de, which is kept in ASCII
        ("bob@xn--bcher-kva.de", "BOB@XN--BCHER-KVA.DE"),
        ("bob@bücher.de", "bob@xn--bcher-kva.de"),  # an account from before addresses had one spelling
    ],
)
def test_a_reset_asked_in_either_spelling_of_the_domain_is_mailed_to_the_stored_address(bob, smtp, stored, typed):
    bob.email = stored
    bob.save()
    ask_for_reset(typed)
    # On the wire a domain is in its ASCII form, whichever spelling the account holds.
    assert [message["To"] for message in smtp.messages] == ["bob@xn--bcher-kva.de"]


def test_an_address_that_only_looks_alike_finds_no_account(bob, smtp):
    """Django checks its iexact match again in Unicode (CVE-2019-19844); so does the portal's any-spelling match."""
    bob.email = "bob@example.com"
    bob.save()
    ask_for_reset("boB@exampIe.com")  # a capital I, not an l
    assert smtp.messages == []
