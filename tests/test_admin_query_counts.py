"""The Django admin's change pages with an inline cost the same queries whatever the number of rows."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from gateways.services import assign_key
from portal.models import Membership, Role

pytestmark = pytest.mark.django_db


def members(team, start, count):
    users = []
    for n in range(start, start + count):
        user = get_user_model().objects.create_user(f"n{n}", f"n{n}@example.com", "x")
        Membership.objects.create(team=team, user=user, role=Role.MEMBER)
        users.append(user)
    return users


def test_team_change_page_costs_the_same_queries_at_any_size(root_client, web, alice, django_assert_max_num_queries):
    members(web, 0, 2)
    url = f"/admin/portal/team/{web.pk}/change/"
    with django_assert_max_num_queries(16):  # 3 members
        assert root_client.get(url).status_code == 200
    members(web, 2, 40)
    with django_assert_max_num_queries(16):  # 43 members: the same
        page = root_client.get(url)
    assert page.status_code == 200 and "n41" in page.content.decode()


def test_key_change_page_costs_the_same_queries_at_any_size(
    root_client, web, alice, tokenbay_key, django_assert_max_num_queries
):
    for user in members(web, 0, 2):
        assign_key(key=tokenbay_key, username=user.username, actor=alice)
    url = f"/admin/gateways/gatewaykey/{tokenbay_key.pk}/change/"
    with django_assert_max_num_queries(13):  # 2 holders
        assert root_client.get(url).status_code == 200
    for user in members(web, 2, 40):
        assign_key(key=tokenbay_key, username=user.username, actor=alice)
    with django_assert_max_num_queries(13):  # 42 holders: the same
        page = root_client.get(url)
    assert page.status_code == 200 and "n41" in page.content.decode()
