"""A NUL character in an address is refused with a sentence on every database (PostgreSQL cannot hold one)."""

import pytest

from tests.api.schema_check import errors, served_schema

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/audit-events/?actor=a%00b",
        "/api/v1/connections/?team=a%00b",
        "/api/v1/probes/?gateway=a%00b",
        "/api/v1/teams/a%00b/",
        "/api/v1/audit-events/?a%00=b",
    ],
)
def test_nul_in_an_api_address_is_a_400_with_detail(api, staff, url):
    response = api(staff).get(url)
    assert response.status_code == 400
    assert "NUL character" in response.json()["detail"]


def test_nul_in_a_page_address_is_a_400(client, staff):
    client.force_login(staff)
    response = client.get("/audit/?actor=%00")
    assert response.status_code == 400
    assert b"NUL character" in response.content


@pytest.mark.parametrize(
    "url,template",
    [("/api/v1/teams/a%00b/", "/api/v1/teams/ab/"), ("/api/v1/gateways/a%00b/", "/api/v1/gateways/ab/")],
)
def test_nul_in_an_api_path_is_a_status_the_schema_documents(api, staff, url, template):
    """The 400 comes before any view, also for operations whose parameters are all in the path."""
    response = api(staff).get(url)
    assert response.status_code == 400
    assert errors(served_schema(api(staff)), "GET", template, response) == []
