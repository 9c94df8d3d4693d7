"""gunicorn's access log (config/gunicorn.conf.py) keeps no working one-time link.

The line is written after the request, past the portal's own log redaction, so the path of an
invitation, a reset, an e-mail confirmation or an install link would keep its code, usable by
whoever reads the logs (a log collector) for as long as the link works.
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.conftest import ROOT
from tests.test_concurrency import free_port
from tests.test_health import PRODUCTION

SETUP = """
import django; django.setup()
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from portal.invitations import create_invitation
from portal.models import Membership, Team
User = get_user_model()
alice = User.objects.create_user("alice", "alice@example.com", "pw-alice-long-enough")
bob = User.objects.create_user("bob", "bob@example.com", "pw-bob-long-enough")
team = Team.objects.create(name="Web", slug="web")
Membership.objects.create(team=team, user=alice, role="admin")
_, raw = create_invitation(team=team, email="new@example.com", role="admin", actor=alice)
print(raw, urlsafe_base64_encode(force_bytes(bob.pk)), default_token_generator.make_token(bob))
"""


def test_the_access_log_hides_the_codes_of_one_time_links(tmp_path):
    env = {**PRODUCTION, "PORTAL_DATA_DIR": str(tmp_path), "USE_X_FORWARDED_PROTO": "True"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, timeout=180)
    made = subprocess.run(
        [sys.executable, "-c", SETUP],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    invitation, uid, reset = made.stdout.split()[-3:]
    port = free_port()
    log = tmp_path / "gunicorn.out"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi"],
            cwd=ROOT,
            env={**env, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{base}/healthz", timeout=2)
                    break
                except httpx.TransportError:
                    assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
            headers = {"Host": "portal.example.com", "X-Forwarded-Proto": "https"}
            opened = httpx.get(f"{base}/invitations/{invitation}/", headers=headers, timeout=10)
            assert opened.status_code == 302 and opened.headers["location"] == "/invitations/accept/"
            reset_page = httpx.get(f"{base}/reset/{uid}/{reset}/", headers=headers, timeout=10)
            assert reset_page.status_code == 302 and "set-password" in reset_page.headers["location"]
            referred = {**headers, "Referer": f"https://portal.example.com/invitations/{invitation}/"}
            httpx.get(f"{base}/invitations/accept/", headers=referred, timeout=10)
            httpx.get(f"{base}/account/confirm-email/emc-one-time-code/", headers=headers, timeout=10)
            httpx.get(f"{base}/api/v1/device/install/dic-one-time-code", headers=headers, timeout=10)
            # The links still work (nobody finished with them): the log must not be a way in.
            assert httpx.get(f"{base}/invitations/{invitation}/", headers=headers, timeout=10).status_code == 302
        finally:
            server.terminate()
            server.wait(timeout=30)
    text = log.read_text()
    hidden = "[one-time code hidden]"
    assert f"GET /invitations/{hidden}/ HTTP/1.1" in text, text[-3000:]
    assert f"GET /reset/{uid}/{hidden}/ HTTP/1.1" in text
    assert f"GET /account/confirm-email/{hidden}/ HTTP/1.1" in text
    assert f"GET /api/v1/device/install/{hidden} HTTP/1.1" in text
    assert "GET /invitations/accept/ HTTP/1.1" in text  # what carries no code is logged as it was
    for code in (invitation, reset, "emc-one-time-code", "dic-one-time-code"):
        assert code not in text
