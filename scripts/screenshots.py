"""Take the README's screenshots: `python scripts/screenshots.py [--out docs] [--only setup key]`.

The portal runs in this process on a scratch SQLite database, seeded with one team, its keys and an
assignment; the keys are probed for real against the gateway emulator (tests/gateway_emulator.py)
on 127.0.0.1, so the latency chart and verdicts are what the code draws. Debian's Chromium takes the
pictures through Playwright. Nothing touches the real database or the network beyond 127.0.0.1.

Each picture is a row of SHOTS: add one, or change a path, and run the script again. A shot whose page
does not exist yet (a 404, or "/" still opening My set-up instead of the dashboard) is skipped with a note.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
PASSWORD = "screenshot-password"


@dataclass(frozen=True)
class Shot:
    name: str  # the file written under --out
    user: str  # who is signed in
    path: str  # the page; {key} is the key with a latency history, {team} its team
    note: str  # what the picture shows, for the run's output
    not_at: str = ""  # skip the shot when the page ends up here (the page it needs is not built yet)


SHOTS = [
    Shot("dashboard.png", "alice", "/", "the dashboard: what needs attention", not_at="/setup/"),
    Shot("setup.png", "bob", "/setup/", "My set-up with the key masked"),
    Shot("key.png", "alice", "/keys/{key}/", "a key page: probes, latency history, assignees, live devices"),
]


def start_django(folder: Path) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = f"sqlite:///{folder / 'screenshots.sqlite3'}"
    os.environ["PORTAL_DATA_DIR"] = str(folder)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DEBUG"] = "True"
    os.environ["PROBE_ALLOW_PRIVATE_IPS"] = "True"
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(emulator) -> dict:
    """A team with two keys and a developer; the TokenBay key probed a few times, one probe failing."""
    from django.contrib.auth import get_user_model

    from gateways.devices import create_device, fetch_key, install_device
    from gateways.models import Gateway
    from gateways.probes.runner import probe_key
    from gateways.services import assign_key, rotate_key_secret, store_key
    from portal.models import Membership, Role
    from portal.services import create_team

    users = get_user_model().objects
    admin = users.create_user("alice", "alice@example.com", PASSWORD, is_staff=True)
    bob = users.create_user("bob", "bob@example.com", PASSWORD)
    carol = users.create_user("carol", "carol@example.com", PASSWORD)
    team = create_team(name="Web platform", slug="web", actor=admin)
    Membership.objects.create(team=team, user=bob, role=Role.MEMBER)
    Membership.objects.create(team=team, user=carol, role=Role.MEMBER)
    tokenbay = Gateway.objects.get(slug="tokenbay")
    tokenbay.base_url = emulator.base_url  # probes go to the emulator; the page shows its address
    tokenbay.save()
    secret = "sk-tokenbay-screenshot-0123456789abcdef"
    emulator.rules.keys = {secret}
    key = store_key(team=team, gateway=tokenbay, label="Bob laptop", secret=secret, actor=admin)
    tokaify = Gateway.objects.get(slug="tokaify")
    ci_runner = store_key(
        team=team,
        gateway=tokaify,
        label="CI runner",
        secret="sk-tokaify-screenshot-0123456789abcdef",
        actor=admin,
    )
    assignment = assign_key(key=key, username="bob", actor=admin)
    assign_key(key=key, username="carol", actor=admin)
    # bob installed his laptop live (the key page lists it), carol keeps a static set-up.
    _, code = create_device(assignment=assignment, name="bob laptop", platform="linux", actor=bob)
    _, token = install_device(code=code, request=None, render=lambda d, t: t)
    fetch_key(raw_token=token, request=None)  # its helper fetched the key once
    for delay, behaviour in [(0.35, "normal"), (0.2, "normal"), (0.5, "normal"), (0, "500"), (0.25, "normal")]:
        emulator.rules.delay, emulator.rules.behaviour = delay, behaviour
        probe_key(key, trigger="web", user=admin)
    emulator.rules.delay, emulator.rules.behaviour = 0.0, "normal"
    # The dashboard's rows: the CI runner's secret is refused (failing), and a rotation that carol's
    # static set-up has not caught up with (bob's laptop fetches the new secret by itself).
    tokaify.base_url = emulator.base_url
    tokaify.save()
    probe_key(ci_runner, trigger="web", user=admin)
    rotated = "sk-tokenbay-screenshot-rotated-0123456789"
    emulator.rules.keys = {secret, rotated}
    rotate_key_secret(key=key, secret=rotated, actor=admin)
    fetch_key(raw_token=token, request=None)
    return {"key": key.id, "team": team.slug}


def serve() -> str:
    """The portal on a free port of 127.0.0.1, in a thread, with its static files."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=False)
    server.set_app(StaticFilesHandler(get_wsgi_application()))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def take(shots: list[Shot], url: str, values: dict, out: Path, width: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        for shot in shots:
            context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme="light")
            page = context.new_page()
            page.goto(f"{url}/login/")
            page.get_by_label("User name").fill(shot.user)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_load_state()
            response = page.goto(url + shot.path.format(**values))
            landed = page.url.removeprefix(url)
            if response is None or response.status == 404 or (shot.not_at and landed == shot.not_at):
                print(f"skipped {shot.name}: {shot.path} is not there yet (landed on {landed})")
            else:
                page.screenshot(path=str(out / shot.name), full_page=True)
                print(f"wrote {out / shot.name}: {shot.note}")
            context.close()
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the pictures (default: docs)")
    parser.add_argument("--only", nargs="*", help="names of shots to take, e.g. setup key (default: all)")
    parser.add_argument("--width", type=int, default=1280, help="window width in pixels (390 for a phone)")
    args = parser.parse_args()
    shots = [s for s in SHOTS if not args.only or s.name.removesuffix(".png") in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop runs beside the ORM in this thread
    with tempfile.TemporaryDirectory() as folder:
        start_django(Path(folder))
        from tests.gateway_emulator import GatewayRules, running_emulator

        served = {"claude-opus-4.8", "claude-sonnet-4.6", "claude-haiku-4.5"}  # TokenBay's defaults, all served
        with running_emulator(GatewayRules(auth_scheme="bearer", models=served)) as emulator:
            values = seed(emulator)
            take(shots, serve(), values, args.out.resolve(), args.width)


if __name__ == "__main__":
    main()
