"""A withdrawal sent twice at once (a double click, a retrying client, two admins) is done and recorded once:
the second finds the invitation withdrawn inside its transaction, not pending on the object it read before."""

from __future__ import annotations

import os
import threading

import pytest
from django.db import connection

from portal import invitations
from portal.api import invitations as api_invitations
from portal.errors import RuleError
from portal.models import Action, AuditEvent, Invitation

ON_POSTGRESQL = os.getenv("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
ALREADY = "This invitation is withdrawn already; there is nothing to withdraw."


def withdrawn_rows(invitation: Invitation) -> int:
    events = AuditEvent.objects.filter(action=Action.INVITATION_WITHDRAWN)
    return sum(1 for e in events if e.details.get("invitation") == invitation.pk)


@pytest.fixture
def invitation(web, alice):
    made, _ = invitations.create_invitation(team=web, email="frank@example.com", role="member", actor=alice)
    return made


@pytest.mark.django_db
def test_a_withdrawal_with_the_invitation_read_before_another_one_is_refused_and_recorded_once(invitation, alice):
    read_by_the_second_click = Invitation.objects.get(pk=invitation.pk)
    invitations.withdraw_invitation(invitation=invitation, actor=alice)
    with pytest.raises(RuleError, match="withdrawn already"):
        invitations.withdraw_invitation(invitation=read_by_the_second_click, actor=alice)
    assert withdrawn_rows(invitation) == 1


@pytest.mark.django_db
def test_the_api_answers_a_delete_that_lost_the_race_with_the_sentence(api, alice, invitation, monkeypatch):
    real = api_invitations.get_object_or_404

    def read_then_withdrawn_by_another_request(*args, **kwargs):
        found = real(*args, **kwargs)  # this request read it pending ...
        invitations.withdraw_invitation(invitation=Invitation.objects.get(pk=found.pk), actor=alice)  # ... too late
        return found

    monkeypatch.setattr(api_invitations, "get_object_or_404", read_then_withdrawn_by_another_request)
    response = api(alice).delete(f"/api/v1/teams/web/invitations/{invitation.pk}/")
    assert response.status_code == 404, (response.status_code, response.content[:300])
    assert response.json()["detail"] == ALREADY
    assert withdrawn_rows(invitation) == 1


@pytest.mark.django_db
def test_a_retried_delete_after_the_withdrawal_answers_as_one_that_lost_the_race(api, alice, invitation):
    """A retrying client (urllib3 retries DELETE) takes 404 for "done"; a 400 said its request was wrong."""
    client = api(alice)
    assert client.delete(f"/api/v1/teams/web/invitations/{invitation.pk}/").status_code == 204
    again = client.delete(f"/api/v1/teams/web/invitations/{invitation.pk}/")
    assert (again.status_code, again.json()["detail"]) == (404, ALREADY)
    assert withdrawn_rows(invitation) == 1


@pytest.mark.django_db
def test_withdrawing_an_accepted_invitation_is_refused(api, alice, charlie, invitation):
    invitations.accept_invitation(invitation=invitation, user=charlie)
    response = api(alice).delete(f"/api/v1/teams/web/invitations/{invitation.pk}/")
    assert response.status_code == 400
    assert response.json()["detail"] == "This invitation is accepted already; there is nothing to withdraw."


@pytest.mark.django_db
def test_withdrawing_on_the_page_twice_says_it_is_withdrawn_already(client, alice, invitation):
    client.force_login(alice)
    url = f"/teams/web/invitations/{invitation.pk}/withdraw/"
    client.post(url)
    second = client.post(url, follow=True)
    assert ALREADY in second.content.decode()
    assert withdrawn_rows(invitation) == 1


@pytest.mark.skipif(not ON_POSTGRESQL, reason="threads need a database server; CI runs this on PostgreSQL")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_four_withdrawals_at_once_withdraw_and_record_once(invitation, alice):
    copies = [Invitation.objects.get(pk=invitation.pk) for _ in range(4)]  # each request read it pending
    barrier = threading.Barrier(len(copies))
    outcomes: list[str] = []

    def withdraw(copy: Invitation) -> None:
        try:
            barrier.wait()
            invitations.withdraw_invitation(invitation=copy, actor=alice)
            outcomes.append("withdrawn")
        except RuleError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=withdraw, args=(copy,)) for copy in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "refused", "refused", "withdrawn"], outcomes
    assert withdrawn_rows(invitation) == 1
