"""Small refusals: the API says when an e-mail channel cannot send, a base URL no request can use is
refused, and gunicorn stops on a bad number with a sentence instead of a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from alerts.services import NO_MAIL_CHANNEL
from gateways.models import Gateway
from tests.api.schema_check import errors, served_schema
from tests.conftest import ROOT
from tests.test_health import PRODUCTION

CHANNELS = "/api/v1/teams/web/channels/"


# --- An e-mail channel added through the API while mail is off -------------------------------------


@pytest.mark.django_db
def test_an_email_channel_added_through_the_api_while_mail_is_off_answers_the_pages_warning(settings, api, alice):
    settings.EMAIL_CONFIGURED = False
    client = api(alice)
    schema = served_schema(client)
    response = client.post(CHANNELS, {"kind": "email", "target": "ops@example.com"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["notices"] == [NO_MAIL_CHANNEL]
    assert errors(schema, "POST", CHANNELS, response) == []
    created = schema["paths"]["/api/v1/teams/{slug}/channels/"]["post"]["responses"]["201"]
    reference = created["content"]["application/json"]["schema"]["$ref"]
    declared = schema["components"]["schemas"][reference.rsplit("/", 1)[1]]
    assert declared["properties"]["notices"]["type"] == "array" and "notices" in declared["required"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        {"kind": "email", "target": "ops@example.com"},
        {"kind": "slack", "target": "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"},
    ],
)
def test_a_channel_that_will_deliver_answers_no_notices(smtp, api, alice, payload):
    client = api(alice)
    response = client.post(CHANNELS, payload, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["notices"] == []
    assert errors(served_schema(client), "POST", CHANNELS, response) == []


# --- A base URL no request can use ------------------------------------------------------------------

UNUSABLE_BASE_URLS = [
    ("https://gw.example.com/my gateway", "path contains a space"),
    ("https://gw.example.com/a\tb", "U+0009"),
    ("https://gw.example.com/a\u00a0b", "U+00A0"),
    ("https://gw.example.com/\u200banthropic", "U+200B"),
    ("https://gw.example.com/a\x7fb", "U+007F"),
    ("http://127.0.0.1:0/anthropic", "port is 0"),
    ("https://gw.example.com:00", "port is 0"),
    ("https://gw.example.com:65536", "from 1 to 65535"),
    ("https://gw example.com/anthropic", "host name or port contains a space"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("base_url, sentence", UNUSABLE_BASE_URLS)
def test_the_api_refuses_a_base_url_no_request_can_use(api, staff, tokaify, base_url, sentence):
    client = api(staff)
    before = client.get("/api/v1/gateways/tokaify/").json()
    response = client.patch("/api/v1/gateways/tokaify/", {"base_url": base_url}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == "base_url"
    assert sentence in response.json()["detail"]
    assert client.get("/api/v1/gateways/tokaify/").json() == before
    created = client.post(
        "/api/v1/gateways/",
        {"slug": "spaced", "name": "Spaced", "base_url": base_url, "probe_prompt": "ping"},
        format="json",
    )
    assert created.status_code == 400 and sentence in created.json()["detail"]
    assert not Gateway.objects.filter(slug="spaced").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("base_url, sentence", UNUSABLE_BASE_URLS[:1] + UNUSABLE_BASE_URLS[5:6])
def test_the_staff_gateway_form_refuses_a_base_url_no_request_can_use(client, staff, tokaify, base_url, sentence):
    client.force_login(staff)
    form = client.get("/gateways/tokaify/edit/").context["form"]
    data = {name: form[name].value() for name in form.fields if form[name].value() not in (None, False)}
    data.update(base_url=base_url, extra_env="{}", troubleshooting="", requires_sk_prefix="on")
    page = client.post("/gateways/tokaify/edit/", data)
    assert page.status_code == 200
    assert sentence in page.content.decode()
    assert "base_url" in page.context["form"].errors
    tokaify.refresh_from_db()
    assert tokaify.base_url == "https://api.tokaify.com"


@pytest.mark.django_db
def test_a_usable_port_and_a_percent_encoded_space_are_kept(api, staff, tokaify):
    response = api(staff).patch(
        "/api/v1/gateways/tokaify/", {"base_url": "http://127.0.0.1:8080/my%20gateway"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["base_url"] == "http://127.0.0.1:8080/my%20gateway"


# --- gunicorn's numbers from the environment --------------------------------------------------------


def gunicorn_check(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """gunicorn as the image runs it, asked only to check its configuration and load the portal."""
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "--check-config", "config.wsgi"],
        cwd=ROOT,
        env={**PRODUCTION, "PORTAL_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "name, value, sentence",
    [
        ("WEB_THREADS", "lots", "WEB_THREADS must be a whole number from 1 to 999, not 'lots'."),
        ("WEB_THREADS", "²", "WEB_THREADS must be a whole number from 1 to 999, not '²'."),
        ("WEB_THREADS", "0", "WEB_THREADS must be a whole number from 1 to 999, not '0'."),
        ("WEB_THREADS", "1000", "WEB_THREADS must be a whole number from 1 to 999, not '1000'."),
        ("WEB_THREADS", "99999999999999999999999", "WEB_THREADS must be a whole number from 1 to 999"),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be a whole number from 1 to 1000, not '0'."),
        ("WEB_CONCURRENCY", "5000", "WEB_CONCURRENCY must be a whole number from 1 to 1000, not '5000'."),
        ("BIND", "127.0.0.1:abc", "BIND's port must be a whole number from 1 to 65535, not 'abc'"),
        ("BIND", "127.0.0.1:99999", "BIND's port must be a whole number from 1 to 65535, not '99999'"),
        ("BIND", "[::1]:0", "BIND's port must be a whole number from 1 to 65535, not '0'"),
    ],
)
def test_a_bad_number_for_gunicorn_stops_it_with_a_sentence(tmp_path, name, value, sentence):
    done = gunicorn_check(tmp_path, **{name: value})
    assert done.returncode != 0
    assert sentence in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("value", ["two", "-1", "1e3"])
def test_a_word_in_web_concurrency_stops_the_images_start_command_with_a_sentence(tmp_path, value):
    """gunicorn reads WEB_CONCURRENCY itself, before its config file: the image's start runs migrate first, which stops."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    command = json.loads(next(line for line in dockerfile.splitlines() if line.startswith("CMD "))[4:])
    assert command[:2] == ["sh", "-c"] and command[2].startswith("python manage.py migrate")
    python_bin = os.path.dirname(sys.executable)  # the image's `python` and `gunicorn` are this environment's
    env = {**PRODUCTION, "PATH": f"{python_bin}:{os.environ['PATH']}", "PORTAL_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [*command[:2], command[2].replace("exec gunicorn", "exec gunicorn --check-config")],
        cwd=ROOT,
        env={**env, "WEB_CONCURRENCY": value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "WEB_CONCURRENCY must be" in done.stderr and value in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "portal.sqlite3").exists()  # stopped before migrating


def test_good_numbers_for_gunicorn_pass_its_check(tmp_path):
    done = gunicorn_check(tmp_path, WEB_CONCURRENCY="3", WEB_THREADS="999", BIND="[::1]:8000")
    assert done.returncode == 0, done.stderr[-2000:]
