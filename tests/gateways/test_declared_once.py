"""Each gateway field and key setting is declared once (the model module's tuples), and the
"key override, else gateway default" rule lives in one place (GatewayKey.setting)."""

from __future__ import annotations

import ast

import pytest

from gateways.api import serializers as s
from gateways.config.builder import build_config
from gateways.forms import GatewayForm, KeyCreateForm, KeySettingsForm
from gateways.models import GATEWAY_FIELDS, KEY_OVERRIDES, KEY_SETTING_FIELDS, GatewayKey
from gateways.rules import AuthScheme
from tests.conftest import ROOT


def test_gateway_form_and_serializers_take_their_fields_from_the_model_tuple():
    assert tuple(GatewayForm.base_fields) == ("slug", *GATEWAY_FIELDS)
    assert tuple(s.GatewayInputSerializer().fields) == ("slug", *GATEWAY_FIELDS)
    assert set(GATEWAY_FIELDS) <= set(s.GatewayOutputSerializer().fields)


def test_key_forms_and_serializers_take_their_fields_from_the_model_tuple():
    assert tuple(KeySettingsForm.base_fields) == KEY_SETTING_FIELDS
    assert set(KeyCreateForm.base_fields) == {"gateway", "secret", *KEY_SETTING_FIELDS}
    assert tuple(s.KeySettingsSerializer().fields) == KEY_SETTING_FIELDS
    assert set(s.KeyUpdateSerializer().fields) == {*KEY_SETTING_FIELDS, "secret", "is_enabled"}
    assert set(KEY_SETTING_FIELDS) - {"label", "expires_at"} <= set(s.KeyOutputSerializer().fields)


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(KEY_OVERRIDES))
def test_a_key_setting_falls_back_to_its_gateway_default_only_when_blank(name, tokenbay):
    gateway_value = getattr(tokenbay, KEY_OVERRIDES[name])
    blank = GatewayKey(gateway=tokenbay, **{name: None if name in ("timeout_ms", "disable_experimental_betas") else ""})
    assert blank.setting(name) == gateway_value
    own = {"timeout_ms": 1234, "disable_experimental_betas": not tokenbay.disable_experimental_betas}.get(name, "own")
    assert GatewayKey(gateway=tokenbay, **{name: own}).setting(name) == own


@pytest.mark.django_db
def test_a_key_can_turn_betas_back_on_where_the_gateway_turns_them_off(tokenbay):
    tokenbay.disable_experimental_betas = True
    inherits = GatewayKey(gateway=tokenbay, label="a", masked="sk-…a")
    overrides = GatewayKey(gateway=tokenbay, label="b", masked="sk-…b", disable_experimental_betas=False)
    assert inherits.betas_disabled and not overrides.betas_disabled
    assert build_config(tokenbay, inherits, "sk-x").env["CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"] == "1"
    assert "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS" not in build_config(tokenbay, overrides, "sk-x").env


@pytest.mark.django_db
def test_the_probe_interval_rule_answers_pages_and_api_alike(api, client, staff):
    response = api(staff).patch("/api/v1/gateways/tokaify/", {"probe_interval_minutes": 0}, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "probe_interval_minutes"
    client.force_login(staff)
    form = client.get("/gateways/tokaify/edit/").context["form"]
    data = {name: form[name].value() for name in form.fields if form[name].value() not in (None, False)}
    data.update(probe_interval_minutes=0, extra_env="{}", troubleshooting="", requires_sk_prefix="on")
    page = client.post("/gateways/tokaify/edit/", data)
    assert "must be between 1 and 10080" in page.content.decode()


# probes/probe.py still compares with "bearer" itself: its transport is reworked after the security merge.
SCHEME_LITERAL_ALLOWED = {"gateways/rules.py", "gateways/probes/probe.py"}


def test_auth_schemes_are_named_by_their_constants_not_spelled_out():
    schemes = {AuthScheme.BEARER, AuthScheme.X_API_KEY}
    found = []
    for path in sorted([*ROOT.glob("gateways/**/*.py"), *ROOT.glob("portal/**/*.py")]):
        name = path.relative_to(ROOT).as_posix()
        if "/migrations/" in name or name in SCHEME_LITERAL_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                values = [node.left, *node.comparators]
                if any(isinstance(v, ast.Constant) and v.value in schemes for v in values):
                    found.append(f"{name}:{node.lineno}")
    assert not found, f"compare with AuthScheme.* instead: {found}"
