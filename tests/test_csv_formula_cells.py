"""CSV exports: a cell a spreadsheet would run as a formula is written as text."""

from __future__ import annotations

import pytest

from gateways.services import assign_key, store_key
from portal import exports

pytestmark = pytest.mark.django_db

FORMULA_LABELS = ("-2+3", "@SUM(A1)", "+cmd")


@pytest.mark.parametrize("text", ["=1+1", "+1+1", "-1+1", "@SUM(1)"])
def test_every_formula_starter_is_kept_as_text_in_a_csv_cell(text):
    """A cell starting with = + - or @ gets a leading quote, so opening the export in a spreadsheet runs nothing."""
    assert exports._cell(text) == "'" + text


def test_a_key_label_like_a_formula_is_text_in_the_connections_csv(api, staff, alice, web, tokenbay, bob):
    """A key label is typed by a team admin; in the connections export it must stay text, whatever it starts with."""
    for label in FORMULA_LABELS:
        key = store_key(team=web, gateway=tokenbay, label=label, secret=f"sk-x-{label}-0123456789abcdef", actor=alice)
        assign_key(key=key, username="bob", actor=alice)
    body = b"".join(api(staff).get("/api/v1/connections/?export=csv").streaming_content).decode()
    for label in FORMULA_LABELS:
        assert f",'{label}," in body
