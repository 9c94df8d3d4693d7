"""copies_out (the key page's and the revoke warning's count of static copies) counts accounts, whoever was renamed."""

from __future__ import annotations

import pytest
from django.test import Client

from gateways import devices
from gateways.services import assign_key, remove_assignment
from portal import services
from portal.models import Membership, Role
from tests.admin_forms import rename_in_the_admin
from tests.conftest import confirm_password

pytestmark = pytest.mark.django_db


def download(user, assignment) -> None:
    client = Client()
    client.force_login(user)
    assert client.get(f"/api/v1/me/configs/{assignment.pk}/settings.json").status_code == 200


def test_a_renamed_holder_who_left_and_came_back_is_one_developer_not_two(root_client, alice, bob, web, tokenbay_key):
    """bob downloads the key, leaves web (his copy is recorded under "bob"), is renamed robert in the admin, comes
    back, is given the key again and downloads it again: one person holds one copy of the present secret."""
    download(bob, assign_key(key=tokenbay_key, username="bob", actor=alice))
    services.remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    rename_in_the_admin(root_client, bob, "robert")
    services.add_member(team=web, username="robert", role=Role.MEMBER, actor=alice)
    download(bob, assign_key(key=tokenbay_key, username="robert", actor=alice))
    assert devices.copies_out(tokenbay_key) == 1


def test_the_revoke_warning_counts_a_renamed_holder_once(root_client, alice, bob, web, tokenbay_key):
    """The same through a single unassignment (remove_assignment's row names "bob") and the revoke warning."""
    download(bob, assign_key(key=tokenbay_key, username="bob", actor=alice))
    remove_assignment(assignment=tokenbay_key.assignments.get(user=bob), actor=alice)
    rename_in_the_admin(root_client, bob, "Bob")  # a change of case only
    download(bob, assign_key(key=tokenbay_key, username="Bob", actor=alice))
    client = Client()
    client.force_login(alice)
    confirm_password(client, alice)
    page = client.post(f"/keys/{tokenbay_key.pk}/revoke/", follow=True).content.decode()
    assert "1 developer holds a static copy" in page, page[page.find("Key revoked") :][:300]


def test_a_former_holders_name_taken_by_another_account_does_not_hide_a_copy(
    root_client, alice, bob, charlie, web, tokenbay_key
):
    """bob leaves web with a copy and is renamed robert; charlie is then renamed bob, joins web and downloads the
    key: two people hold a copy of the present secret."""
    download(bob, assign_key(key=tokenbay_key, username="bob", actor=alice))
    services.remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    rename_in_the_admin(root_client, bob, "robert")
    rename_in_the_admin(root_client, charlie, "bob")
    services.add_member(team=web, username="bob", role=Role.MEMBER, actor=alice)
    download(charlie, assign_key(key=tokenbay_key, username="bob", actor=alice))
    assert devices.copies_out(tokenbay_key) == 2


def test_names_swapped_between_two_leavers_still_count_two(root_client, alice, bob, charlie, web, tokenbay_key):
    """bob and charlie both leave with a copy, then swap names through a third: still two people."""
    services.add_member(team=web, username="charlie", role=Role.MEMBER, actor=alice)
    download(bob, assign_key(key=tokenbay_key, username="bob", actor=alice))
    download(charlie, assign_key(key=tokenbay_key, username="charlie", actor=alice))
    services.remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    services.remove_member(membership=Membership.objects.get(team=web, user=charlie), actor=alice)
    rename_in_the_admin(root_client, bob, "swap")
    rename_in_the_admin(root_client, charlie, "bob")
    rename_in_the_admin(root_client, bob, "charlie")
    assert devices.copies_out(tokenbay_key) == 2


def test_counting_copies_takes_a_fixed_number_of_queries(
    root_client, alice, bob, web, tokenbay_key, django_assert_max_num_queries
):
    download(bob, assign_key(key=tokenbay_key, username="bob", actor=alice))
    services.remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    for name in ("b1", "b2", "b3", "b4", "b5"):
        rename_in_the_admin(root_client, bob, name)
        services.add_member(team=web, username=name, role=Role.MEMBER, actor=alice)
        download(bob, assign_key(key=tokenbay_key, username=name, actor=alice))
        services.remove_member(membership=Membership.objects.get(team=web, user=bob), actor=alice)
    with django_assert_max_num_queries(5):
        assert devices.copies_out(tokenbay_key) == 1
