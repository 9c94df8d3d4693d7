"""`manage.py probe` prints one row per key, whatever its label holds: a label stored before labels were held to
one line may carry a line break, or a terminal's escape sequence, and must neither add a row nor reach the terminal."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from gateways.models import GatewayKey
from gateways.services import store_key
from tests.conftest import TOKENBAY_SECRET
from tests.gateway_emulator import GatewayRules, running_emulator


def probe_table(tokenbay, label, web, alice, capsys) -> list[str]:
    with running_emulator(GatewayRules(auth_scheme="bearer", keys={"sk-someone-else"})) as gw:
        tokenbay.base_url = gw.base_url
        tokenbay.save()
        key = store_key(team=web, gateway=tokenbay, label="CI", secret=TOKENBAY_SECRET, actor=alice)
        GatewayKey.objects.filter(pk=key.pk).update(label=label)  # as stored before the rule refused it
        with pytest.raises(SystemExit):  # the key fails at this gateway
            call_command("probe")
    return capsys.readouterr().out.splitlines()


def test_a_label_with_a_line_break_adds_no_row(web, alice, tokenbay, capsys):
    lines = probe_table(tokenbay, "CI\nweb   tokenbay  Prod key       ok", web, alice, capsys)
    assert len(lines) == 3, lines  # the header, the key's one row, the summary
    assert lines[1].split()[:4] == ["web", "tokenbay", "CI", "web"]
    assert "auth_failed" in lines[1]


def test_a_label_sends_no_escape_sequence_to_the_terminal(web, alice, tokenbay, capsys):
    lines = probe_table(tokenbay, "CI\x1b[2K\x1b[1A", web, alice, capsys)
    assert not any("\x1b" in line for line in lines), lines


def test_the_vault_names_a_key_on_one_line(tokenbay_key):
    tokenbay_key.label = "CI\nsecond line"
    assert tokenbay_key.vault_label == f"Key {tokenbay_key.pk} (CI second line)"
