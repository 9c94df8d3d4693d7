"""An install link replaced by a newer one of the same device name and system before its use (R70).

It refuses with a sentence of its own, not "removed by <the owner>", and no device list shows it: it was never on a
machine, and the newer link is the device. Its audit row stays. An installed device is never replaced or hidden.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gateways import devices
from gateways.models import Device, DeviceRemoval
from gateways.selectors import key_devices, my_devices, team_devices
from gateways.services import revoke_key
from portal.models import AuditEvent
from tests.api.test_devices import install, make_device, path_of

pytestmark = pytest.mark.django_db

SHELL_SCRIPT = "text/x-shellscript"


def replaced_sentence(device: Device) -> str:
    return (
        f"This install link was replaced on {devices._minute(device.revoked_at)} by a newer one for a device of the "
        f"same name ('ci-runner', Linux): run the newest link, or make a new install link under Install on a new "
        f"device on My set-up in {devices.portal_name()}. To install on two machines, give each its own name."
    )


def test_a_link_replaced_by_a_newer_one_says_so_not_that_its_owner_removed_it(api, client, bob, bob_assignment):
    first = make_device(api, bob, bob_assignment, name="ci-runner")
    newest = make_device(api, bob, bob_assignment, name="ci-runner")
    replaced = Device.objects.get(pk=first["id"])
    assert replaced.revoked_at is not None and replaced.removed_reason == DeviceRemoval.REPLACED
    assert replaced.revoked_by == bob  # who asked for the newer link; the reason says nobody removed it
    sentence = replaced_sentence(replaced)

    # A browser, a plain curl, PowerShell's irm: a 410 with the sentence, as a used or expired link.
    plain = client.get(path_of(first["install_url"]))
    assert (plain.status_code, plain.content.decode()) == (410, sentence + "\n")
    # The documented `curl … | sh`: a script that prints it and fails, which sh runs as such.
    script = client.get(path_of(first["install_url"]), HTTP_ACCEPT=SHELL_SCRIPT)
    assert script.status_code == 200 and script["Content-Type"].startswith(SHELL_SCRIPT)
    ran = subprocess.run(["sh"], input=script.content.decode(), capture_output=True, text=True, timeout=30)
    assert (ran.returncode, ran.stdout, ran.stderr) == (1, "", sentence + "\n")
    assert "removed" not in ran.stderr and "run the install command again" not in ran.stderr

    # The newest link works, and the replaced one still refuses afterwards with the same sentence.
    install(client, newest)
    assert client.get(path_of(first["install_url"])).content.decode() == sentence + "\n"
    assert not Device.objects.filter(pk=first["id"], installed_at__isnull=False).exists()


def test_a_replaced_link_is_on_no_device_list_and_its_audit_row_stays(api, client, alice, bob, bob_assignment):
    first = make_device(api, bob, bob_assignment, name="ci-runner")
    newest = make_device(api, bob, bob_assignment, name="ci-runner")

    client.force_login(bob)
    page = client.get("/devices/").content.decode()
    assert re.findall(r'<tr data-device="(\d+)"', page) == [str(newest["id"])]
    assert "removed by bob" not in page
    mine = api(bob).get("/api/v1/devices/").json()["results"]
    assert [d["id"] for d in mine] == [newest["id"]]
    teams = api(alice).get("/api/v1/devices/", {"team": "web"}).json()["results"]
    assert [d["id"] for d in teams] == [newest["id"]]
    assert list(team_devices(bob_assignment.key.team)) == list(my_devices(bob)) == [Device.objects.get(pk=newest["id"])]
    install(client, newest)
    assert [d.pk for d in key_devices(bob_assignment.key)] == [newest["id"]]

    [row] = AuditEvent.objects.filter(action="device.removed")
    assert row.actor_username == "bob" and row.details["device"] == first["id"]
    assert row.details["reason"] == DeviceRemoval.REPLACED.label


def test_an_installed_device_is_never_replaced_and_a_removed_one_stays_listed(api, client, alice, bob, bob_assignment):
    """A second machine of the same name is a device of its own; a link a person removed says who, and is listed."""
    installed = make_device(api, bob, bob_assignment, name="ci-runner")
    install(client, installed)
    second = make_device(api, bob, bob_assignment, name="ci-runner")
    assert Device.objects.get(pk=installed["id"]).revoked_at is None
    assert Device.objects.get(pk=installed["id"]).removed_reason == ""

    devices.remove_device(device=Device.objects.get(pk=second["id"]), actor=alice)
    removed = Device.objects.get(pk=second["id"])
    assert removed.removed_reason == ""
    refused = client.get(path_of(second["install_url"]))
    assert refused.status_code == 403 and "removed from" in refused.content.decode()
    assert "by alice" in refused.content.decode()
    assert {d["id"] for d in api(bob).get("/api/v1/devices/").json()["results"]} == {installed["id"], second["id"]}
    client.force_login(bob)
    assert "removed by alice" in client.get("/devices/").content.decode()


def test_the_device_lists_cost_the_same_with_replaced_links(api, client, alice, bob, bob_assignment):
    make_device(api, bob, bob_assignment, name="ci-runner")
    client.force_login(bob)
    bob_api, alice_api = api(bob), api(alice)

    def queries() -> list[int]:
        counts = []
        for read in (
            lambda: client.get("/devices/"),
            lambda: bob_api.get("/api/v1/devices/"),
            lambda: alice_api.get("/api/v1/devices/", {"team": "web"}),
        ):
            with CaptureQueriesContext(connection) as captured:
                assert read().status_code == 200
            counts.append(len(captured))
        return counts

    queries()  # the first reads of a session and of a token write what later reads do not
    before = queries()
    for _ in range(3):
        make_device(api, bob, bob_assignment, name="ci-runner")
    assert queries() == before
    assert Device.objects.filter(removed_reason=DeviceRemoval.REPLACED).count() == 3


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migration_marks_links_replaced_before_it_from_their_audit_rows(
    migrator, api, client, alice, bob, bob_assignment
):
    """Links replaced before the column existed: their device.removed row names them, with the reason in words."""
    replaced = make_device(api, bob, bob_assignment, name="ci-runner")
    newest = make_device(api, bob, bob_assignment, name="ci-runner")
    install(client, newest)
    by_a_person = make_device(api, bob, bob_assignment, name="spare")
    devices.remove_device(device=Device.objects.get(pk=by_a_person["id"]), actor=alice)
    Device.objects.update(removed_reason="")  # as the rows stood before gateways 0018

    migrator.migrate([("gateways", "0017_assignment_download_fingerprint")])
    migrator.loader.build_graph()
    migrator.migrate([("gateways", "0018_device_removed_reason")])

    reasons = dict(Device.objects.values_list("pk", "removed_reason"))
    assert reasons == {replaced["id"]: DeviceRemoval.REPLACED, newest["id"]: "", by_a_person["id"]: ""}


def test_a_replaced_link_run_after_the_key_was_revoked_says_what_the_newest_link_says(
    api, client, alice, bob, bob_assignment
):
    """ "Run the newest link, or make a new one" would send bob to two refusals: the key's state comes first."""
    first = make_device(api, bob, bob_assignment, name="ci-runner")
    newest = make_device(api, bob, bob_assignment, name="ci-runner")
    revoke_key(key=bob_assignment.key, actor=alice)
    said_by_newest = client.get(path_of(newest["install_url"]))
    said_by_first = client.get(path_of(first["install_url"]))
    assert said_by_first.status_code == said_by_newest.status_code == 403
    assert said_by_first.content == said_by_newest.content
    assert b"was revoked" in said_by_first.content and b"newest link" not in said_by_first.content
