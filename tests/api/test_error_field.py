"""README, The API: an error names the input at fault in "field" when there is one, whoever refused it."""

import pytest


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "X", "slug": "Bad Slug"}, "slug"),  # refused by the serializer's field
        ({"name": "X"}, "slug"),  # missing
    ],
)
def test_a_serializer_refusing_one_input_names_it(api, staff, body, field):
    response = api(staff).post("/api/v1/teams/", body, format="json")
    assert response.status_code == 400
    answer = response.json()
    assert answer["field"] == field
    assert answer["detail"].startswith(f"{field}: ")
    assert list(answer["errors"]) == [field]


def test_two_inputs_at_fault_are_both_in_errors_and_neither_is_the_field(api, staff):
    response = api(staff).post("/api/v1/teams/", {"slug": "Bad Slug"}, format="json")
    assert response.status_code == 400
    answer = response.json()
    assert "field" not in answer
    assert set(answer["errors"]) == {"name", "slug"}
    assert "name: " in answer["detail"] and "slug: " in answer["detail"]


@pytest.mark.parametrize("export", ["jsonl", "xml", ""])
def test_a_connections_export_in_a_format_the_list_has_not_is_refused(api, staff, export):
    """As the audit list answers it: a file asked for and not given is a 400, not the JSON list."""
    response = api(staff).get("/api/v1/connections/", {"export": export})
    assert response.status_code == 400
    assert response.json() == {"detail": f"export must be csv, not {export!r}.", "field": "export"}


def test_a_gateway_slug_with_a_nul_character_is_refused_with_a_sentence(api, alice, web, tokenbay):
    """PostgreSQL fails on a NUL in a query: the refusal must come before it (found by tests/api/test_schema_fuzz.py)."""
    body = {"gateway": "token\u0000bay", "label": "CI", "secret": "sk-nul-slug-00000000000000"}
    response = api(alice).post("/api/v1/teams/web/keys/", body, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "gateway"
    assert "NUL" in response.json()["detail"]


def test_a_body_field_refused_by_a_rule_is_in_errors_as_one_refused_by_the_serializer(api, alice, web, tokaify):
    """A client that maps errors onto its form's fields shows the key form's commonest mistake (a secret the gateway
    would refuse) where it shows an unknown gateway."""
    body = {"gateway": "tokaify", "label": "CI", "secret": "no-prefix-0123456789abcdef"}
    response = api(alice).post("/api/v1/teams/web/keys/", body, format="json")
    assert response.status_code == 400
    answer = response.json()
    assert answer["field"] == "secret"
    assert answer["errors"] == {"secret": [answer["detail"]]}
