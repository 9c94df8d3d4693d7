"""Many operations in any order, checked against a small model after every step (hypothesis stateful).

Teams, members, keys, assignments, rotations, settings, revocations, downloads, live devices, offboarding,
probe outcomes and weeks of time, driven through the portal's services and API; after each step the audit
chain verifies, each audited change left one row, the connections list and the dashboard match the model,
refused people and devices get a sentence and no secret, and no secret is in an audit row or a log record.
The run is small (a couple of dozen seconds) for CI; raise max_examples locally to look further.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.conf import settings as dj_settings
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from rest_framework.test import APIClient

from gateways import dashboard
from gateways.models import Assignment, Gateway, GatewayKey
from gateways.offboarding import for_account, offboard
from gateways.probes.probe import ProbeOutcome
from gateways.probes.runner import save_outcome
from gateways.services import (
    assign_key,
    remove_assignment,
    revoke_key,
    rotate_key_secret,
    set_key_enabled,
    store_key,
    update_key_settings,
)
from portal.audit import verify_chain
from portal.errors import RuleError
from portal.models import AccessToken, AuditEvent, Membership
from portal.services import add_member, create_team, remove_member
from tests.conftest import make_user

BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
USERS = ["alice", "bob", "dave", "charlie", "erin"]
TEAMS = ["web", "data"]
GATEWAYS = ["tokaify", "tokenbay"]
VERDICTS = ["ok", "auth_failed", "gateway_error", "model_not_found"]
FORMATS = ["settings.json", "bash", "install.sh"]
AUDITED = {
    "team.created",
    "member.added",
    "member.removed",
    "member.role_changed",
    "key.created",
    "key.updated",
    "key.rotated",
    "key.enabled",
    "key.disabled",
    "key.revoked",
    "assignment.created",
    "assignment.self_assigned",
    "assignment.removed",
    "config.downloaded",
    "config.refused",
    "device.created",
    "device.installed",
    "device.removed",
    "device.key_fetched",
    "device.fetch_refused",
    "account.offboarded",
    "probe.run",
}


@dataclass
class MKey:
    pk: object
    team: str
    gateway: str
    label: str
    secret: str
    enabled: bool = True
    revoked: bool = False
    expires_at: datetime | None = None
    config_changed_at: datetime = BASE
    settings_changed_at: datetime = BASE
    rotated_at: datetime | None = None
    verdict: str = ""
    probed_at: datetime | None = None
    timeout: int | None = None

    def state(self, now):
        if self.revoked:
            return "revoked"
        if not self.enabled:
            return "disabled"
        if self.expires_at and self.expires_at <= now:
            return "expired"
        return "active"

    @property
    def fp(self):
        from gateways.rules import fingerprint

        return fingerprint(self.secret)


@dataclass
class MAssignment:
    pk: int
    key: object
    user: str
    last_download_at: datetime | None = None


@dataclass
class MDevice:
    pk: int
    user: str
    key: object
    assignment: int | None
    token: str = ""
    installed_at: datetime | None = None
    removed: bool = False
    last_seen_at: datetime | None = None
    fetched_fp: str = ""
    fetch_audited_on: object = None
    refusal: tuple = ()


STATS = Counter()


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.lines.append(str(record.msg))


class PortalMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.sid = transaction.savepoint()
        self.traveller = time_machine.travel(BASE, tick=False)
        self.clock = self.traveller.start()
        self.handler = _Collect()
        logging.getLogger().addHandler(self.handler)
        self.expected = Counter()
        self.secrets: list[str] = []
        self.n = 0
        self.trace: list[str] = []
        self.users = {name: make_user(name) for name in USERS}
        self.staff = make_user("staff", staff=True)
        self.users["staff"] = self.staff
        self.active = dict.fromkeys(self.users, True)
        far = BASE + timedelta(days=3000)
        self.tokens = {}
        for name, user in self.users.items():
            _, raw = AccessToken.issue(user, name="r21", expires_at=far)
            self.tokens[name] = raw
        self.teams = {}
        self.members: dict[str, dict[str, str]] = {}
        for slug in TEAMS:
            self.teams[slug] = create_team(name=slug.title(), slug=slug, actor=self.staff)
            self.members[slug] = {"staff": "admin"}
            self.expected["team.created"] += 1
            self.expected["member.added"] += 1
        for slug, name, role in (
            ("web", "alice", "admin"),
            ("web", "bob", "member"),
            ("web", "dave", "auditor"),
            ("data", "charlie", "admin"),
        ):
            add_member(team=self.teams[slug], username=name, role=role, actor=self.staff)
            self.members[slug][name] = role
            self.expected["member.added"] += 1
        self.gateways = {slug: Gateway.objects.get(slug=slug) for slug in GATEWAYS}
        self.keys: dict[object, MKey] = {}
        self.assignments: dict[int, MAssignment] = {}
        self.devices: dict[int, MDevice] = {}
        self.gone_assignments: list[tuple[int, str]] = []
        self.pending: dict = {}
        self.removed_pending: set = set()
        for team, gateway, holder in (("web", "tokenbay", "bob"), ("data", "tokaify", "charlie")):
            self.store_a_key(team, gateway, None)
            kpk = list(self.keys)[-1]
            assignment = assign_key(key=self.key_row(self.keys[kpk]), username=holder, actor=self.staff)
            self.assignments[assignment.pk] = MAssignment(assignment.pk, kpk, holder)
            self.expected["assignment.created"] += 1
        for apk, a in list(self.assignments.items()):
            response = self.api(a.user).post(
                f"/api/v1/me/configs/{apk}/devices/", {"name": "pc", "platform": "linux"}, format="json"
            )
            made = response.json()
            self.expected["device.created"] += 1
            installed = Client().get(urlsplit(made["install_url"]).path)
            token = re.search(r"(pkf_[0-9a-f]+_[\w-]+)", installed.content.decode()).group(1)
            self.expected["device.installed"] += 1
            self.devices[made["id"]] = MDevice(made["id"], a.user, a.key, apk, token=token, installed_at=self.now)
        self.trace.clear()

    def teardown(self):
        STATS.update(self.expected)
        STATS["examples"] += 1
        logging.getLogger().removeHandler(self.handler)
        self.traveller.stop()
        transaction.savepoint_rollback(self.sid)

    # --- helpers ---------------------------------------------------------------------------------

    @property
    def now(self):
        from django.utils import timezone

        return timezone.now()

    def tick(self, note):
        self.clock.shift(timedelta(seconds=61))
        self.trace.append(note)

    def api(self, name) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.tokens[name]}")
        return client

    def new_secret(self, gateway):
        self.n += 1
        secret = f"sk-{gateway}-r21s{self.n:04d}-0123456789abcdef"
        self.secrets.append(secret)
        return secret

    def key_row(self, mkey) -> GatewayKey:
        return GatewayKey.objects.select_related("team", "gateway").get(pk=mkey.pk)

    def pick(self, data, things):
        things = list(things)  # insertion order: key ids are random UUIDs
        if not things:
            return None
        return data.draw(st.sampled_from(things))

    def device_live(self, d: MDevice):
        key = self.keys[d.key]
        return (
            d.installed_at is not None
            and not d.removed
            and d.assignment is not None
            and key.state(self.now) == "active"
            and self.active[d.user]
        )

    def take_back(self, pk):
        a = self.assignments.pop(pk)
        self.gone_assignments.append((pk, a.user))
        for d in self.devices.values():
            if d.assignment == pk:
                d.assignment = None

    # --- rules -----------------------------------------------------------------------------------

    @rule(data=st.data(), role=st.sampled_from(["admin", "member", "auditor"]))
    def add_or_change_member(self, data, role):
        team = data.draw(st.sampled_from(TEAMS))
        name = data.draw(st.sampled_from(USERS))
        self.tick(f"add_member({team}, {name}, {role})")
        old = self.members[team].get(name)
        try:
            add_member(team=self.teams[team], username=name, role=role, actor=self.staff)
        except RuleError as exc:
            if not self.active[name]:
                return
            others = [u for u, r in self.members[team].items() if r == "admin" and u != name]
            assert old == "admin" and role != "admin" and not others, str(exc)
            return
        assert self.active[name]
        if old is None:
            self.expected["member.added"] += 1
        elif old != role:
            self.expected["member.role_changed"] += 1
        self.members[team][name] = role

    @rule(data=st.data())
    def remove_a_member(self, data):
        team = data.draw(st.sampled_from(TEAMS))
        name = self.pick(data, [u for u in self.members[team] if u != "staff"])
        if name is None:
            return
        self.tick(f"remove_member({team}, {name})")
        membership = Membership.objects.select_related("team", "user").get(team__slug=team, user__username=name)
        try:
            remove_member(membership=membership, actor=self.staff)
        except RuleError:
            others = [u for u, r in self.members[team].items() if r == "admin" and u != name]
            assert self.members[team][name] == "admin" and not others
            return
        self.expected["member.removed"] += 1
        del self.members[team][name]
        for pk, a in list(self.assignments.items()):
            if a.user == name and self.keys[a.key].team == team:
                self.expected["assignment.removed"] += 1  # each key's trail says when they lost it
                self.take_back(pk)

    @rule(
        team=st.sampled_from(TEAMS),
        gateway=st.sampled_from(GATEWAYS),
        expiry=st.sampled_from([None, None, 3, 20, 45]),
    )
    def store_a_key(self, team, gateway, expiry):
        self.tick(f"store_key({team}, {gateway}, expires in {expiry} days)")
        secret = self.new_secret(gateway)
        label = f"K{self.n}"
        expires_at = self.now + timedelta(days=expiry) if expiry else None
        key = store_key(
            team=self.teams[team],
            gateway=self.gateways[gateway],
            label=label,
            secret=secret,
            actor=self.staff,
            expires_at=expires_at,
        )
        self.keys[key.pk] = MKey(
            key.pk,
            team,
            gateway,
            label,
            secret,
            expires_at=expires_at,
            config_changed_at=key.config_changed_at,
            settings_changed_at=key.settings_changed_at,
        )
        self.expected["key.created"] += 1

    @rule(data=st.data())
    def assign(self, data):
        kpk = self.pick(data, self.keys)
        if kpk is None:
            return
        mkey = self.keys[kpk]
        pool = [u for u in self.members[mkey.team] if u != "staff"] or USERS
        name = data.draw(st.sampled_from(sorted(pool) if data.draw(st.integers(0, 4)) else USERS))
        self.tick(f"assign({mkey.label}, {name})")
        already = any(a.key == kpk and a.user == name for a in self.assignments.values())
        try:
            assignment = assign_key(key=self.key_row(mkey), username=name, actor=self.staff)
        except RuleError:
            assert (not self.active[name]) or name not in self.members[mkey.team] or mkey.revoked or already
            return
        assert self.active[name] and name in self.members[mkey.team] and not mkey.revoked and not already
        self.assignments[assignment.pk] = MAssignment(assignment.pk, kpk, name)
        self.expected["assignment.created"] += 1

    @rule(data=st.data())
    def unassign(self, data):
        pk = self.pick(data, self.assignments)
        if pk is None:
            return
        self.tick(f"remove_assignment({pk})")
        remove_assignment(
            assignment=Assignment.objects.select_related("key__team", "key__gateway", "user").get(pk=pk),
            actor=self.staff,
        )
        self.expected["assignment.removed"] += 1
        self.take_back(pk)

    @rule(data=st.data())
    def rotate(self, data):
        kpk = self.pick(data, self.keys)
        if kpk is None:
            return
        mkey = self.keys[kpk]
        self.tick(f"rotate({mkey.label})")
        secret = self.new_secret(mkey.gateway)
        try:
            rotate_key_secret(key=self.key_row(mkey), secret=secret, actor=self.staff)
        except RuleError:
            assert mkey.revoked
            return
        assert not mkey.revoked
        mkey.secret = secret
        mkey.config_changed_at = mkey.rotated_at = self.now
        self.expected["key.rotated"] += 1

    @rule(data=st.data(), what=st.sampled_from(["timeout", "label", "renew", "expire_soon"]))
    def change_settings(self, data, what):
        kpk = self.pick(data, self.keys)
        if kpk is None:
            return
        mkey = self.keys[kpk]
        self.tick(f"update_key_settings({mkey.label}, {what})")
        if what == "timeout":
            value = 600000 if mkey.timeout != 600000 else 300000
            changes = {"timeout_ms": value}
        elif what == "label":
            self.n += 1
            changes = {"label": f"K{self.n}"}
        elif what == "renew":
            changes = {"expires_at": self.now + timedelta(days=60)}
        else:
            changes = {"expires_at": self.now + timedelta(days=2)}
        try:
            update_key_settings(key=self.key_row(mkey), changes=changes, actor=self.staff)
        except RuleError:
            assert mkey.revoked
            return
        assert not mkey.revoked
        self.expected["key.updated"] += 1
        if what == "timeout":
            mkey.timeout = changes["timeout_ms"]
            mkey.config_changed_at = mkey.settings_changed_at = self.now
        elif what == "label":
            mkey.label = changes["label"]
        else:
            mkey.expires_at = changes["expires_at"].replace(microsecond=0)

    @rule(data=st.data(), enabled=st.booleans())
    def enable_or_disable(self, data, enabled):
        kpk = self.pick(data, self.keys)
        if kpk is None:
            return
        mkey = self.keys[kpk]
        self.tick(f"set_key_enabled({mkey.label}, {enabled})")
        try:
            set_key_enabled(key=self.key_row(mkey), enabled=enabled, actor=self.staff)
        except RuleError:
            assert mkey.revoked
            return
        if mkey.enabled != enabled:
            self.expected["key.enabled" if enabled else "key.disabled"] += 1
        mkey.enabled = enabled

    @rule(data=st.data())
    def revoke(self, data):
        if data.draw(st.integers(0, 2)):
            return
        kpk = self.pick(data, self.keys)
        if kpk is None:
            return
        mkey = self.keys[kpk]
        self.tick(f"revoke({mkey.label})")
        revoke_key(key=self.key_row(mkey), actor=self.staff)
        if not mkey.revoked:
            self.expected["key.revoked"] += 1
        mkey.revoked = True

    @rule(data=st.data(), fmt=st.sampled_from(FORMATS))
    def download(self, data, fmt):
        pk = self.pick(data, self.assignments)
        if pk is None:
            return
        a = self.assignments[pk]
        mkey = self.keys[a.key]
        self.tick(f"download({pk} by {a.user}, {fmt})")
        response = self.api(a.user).get(f"/api/v1/me/configs/{pk}/{fmt}")
        body = response.content.decode()
        if not self.active[a.user]:
            assert response.status_code == 401, (response.status_code, body)
            return
        if mkey.state(self.now) == "active":
            assert response.status_code == 200, (response.status_code, body)
            if fmt != "install.sh":  # the installer carries the key in its own encoding
                assert mkey.secret in body
            self.expected["config.downloaded"] += 1
            a.last_download_at = self.now
        else:
            assert response.status_code == 410, (response.status_code, body)
            assert response.json()["detail"]
            assert not any(s in body for s in self.secrets)
            self.expected["config.refused"] += 1

    @rule(data=st.data())
    def download_a_taken_back_assignment(self, data):
        if not self.gone_assignments:
            return
        pk, name = data.draw(st.sampled_from(self.gone_assignments))
        if not self.active[name] or pk in self.assignments:
            return
        self.tick(f"download_gone({pk} by {name})")
        response = self.api(name).get(f"/api/v1/me/configs/{pk}/bash")
        assert response.status_code == 404, response.content
        assert response.json()["detail"]

    @rule(data=st.data())
    def make_and_install_device(self, data):
        pk = self.pick(data, self.assignments)
        if pk is None:
            return
        a = self.assignments[pk]
        mkey = self.keys[a.key]
        self.tick(f"device({pk} by {a.user})")
        response = self.api(a.user).post(
            f"/api/v1/me/configs/{pk}/devices/", {"name": f"pc{self.n}", "platform": "linux"}, format="json"
        )
        if not self.active[a.user]:
            assert response.status_code == 401
            return
        if mkey.state(self.now) != "active":
            assert response.status_code == 410, response.content
            return
        assert response.status_code == 201, response.content
        self.expected["device.created"] += 1
        made = response.json()
        if data.draw(st.integers(0, 2)) == 0:  # installed later, or never
            self.pending[made["id"]] = (made, a.user, a.key, pk)
            return
        self.tick(f"install(device {made['id']})")
        installed = Client().get(urlsplit(made["install_url"]).path)
        assert installed.status_code == 200, installed.content
        token = re.search(r"(pkf_[0-9a-f]+_[\w-]+)", installed.content.decode()).group(1)
        self.expected["device.installed"] += 1
        self.devices[made["id"]] = MDevice(made["id"], a.user, a.key, pk, token=token, installed_at=self.now)

    @rule(data=st.data())
    def install_later(self, data):
        dpk = self.pick(data, self.pending)
        if dpk is None:
            return
        made, user, kpk, apk = self.pending.pop(dpk)
        self.tick(f"install_later(device {dpk})")
        installed = Client().get(urlsplit(made["install_url"]).path)
        mkey = self.keys[kpk]
        body = installed.content.decode()
        removed = dpk in self.removed_pending
        ok = (
            not removed
            and self.active[user]
            and apk in self.assignments
            and mkey.state(self.now) == "active"
            and self.now < datetime.fromisoformat(made["expires_at"].replace("Z", "+00:00"))
        )
        if not ok:
            assert installed.status_code in (403, 410), (installed.status_code, body)
            assert not any(s in body for s in self.secrets)
            return
        assert installed.status_code == 200, (installed.status_code, body)
        token = re.search(r"(pkf_[0-9a-f]+_[\w-]+)", body).group(1)
        self.expected["device.installed"] += 1
        self.devices[dpk] = MDevice(dpk, user, kpk, apk, token=token, installed_at=self.now)

    @rule(data=st.data())
    def remove_pending_device(self, data):
        dpk = self.pick(data, [d for d in self.pending if d not in self.removed_pending])
        if dpk is None:
            return
        self.tick(f"remove_device(pending {dpk})")
        response = self.api("staff").delete(f"/api/v1/devices/{dpk}/")
        assert response.status_code == 204, response.content
        self.expected["device.removed"] += 1
        self.removed_pending.add(dpk)

    @rule(data=st.data())
    def fetch_again(self, data):
        self.fetch(data)

    @rule(data=st.data(), fmt=st.sampled_from(FORMATS))
    def download_again(self, data, fmt):
        self.download(data, fmt)

    @rule(data=st.data())
    def fetch(self, data):
        dpk = self.pick(data, self.devices)
        if dpk is None:
            return
        d = self.devices[dpk]
        mkey = self.keys[d.key]
        self.tick(f"fetch(device {dpk})")
        response = Client().get("/api/v1/device/key", HTTP_AUTHORIZATION=f"Bearer {d.token}")
        body = response.content.decode()
        today = self.now.date()
        if self.device_live(d):
            assert response.status_code == 200, (response.status_code, body)
            assert body == mkey.secret
            if d.last_seen_at is None or d.fetched_fp != mkey.fp or d.fetch_audited_on != today:
                self.expected["device.key_fetched"] += 1
                d.fetch_audited_on = today
            d.last_seen_at = self.now
            d.fetched_fp = mkey.fp
            return
        assert response.status_code == 403, (response.status_code, body)
        assert body.strip() and not any(s in body for s in self.secrets)
        if d.removed:
            reason = "removed"
        elif not self.active[d.user]:
            reason = "inactive"
        elif d.assignment is None:
            reason = "unassigned"
        else:
            reason = mkey.state(self.now)
        if d.refusal != (reason, today):
            self.expected["device.fetch_refused"] += 1
            d.refusal = (reason, today)

    @rule(data=st.data())
    def remove_a_device(self, data):
        dpk = self.pick(data, self.devices)
        if dpk is None:
            return
        d = self.devices[dpk]
        self.tick(f"remove_device({dpk})")
        response = self.api("staff").delete(f"/api/v1/devices/{dpk}/")
        assert response.status_code == 204, response.content
        if not d.removed:
            self.expected["device.removed"] += 1
        d.removed = True

    @rule(data=st.data())
    def offboard_account(self, data):
        if data.draw(st.integers(0, 5)):
            return
        name = self.pick(data, [u for u in USERS if self.active[u]])
        if name is None:
            return
        self.tick(f"offboard({name})")
        user = self.users[name]
        user.refresh_from_db()
        offboard(for_account(user), actor=self.staff)
        self.expected["account.offboarded"] += 1
        for team in TEAMS:
            if name in self.members[team]:
                self.expected["member.removed"] += 1
                del self.members[team][name]
        for pk, a in list(self.assignments.items()):
            if a.user == name:
                self.take_back(pk)
        self.active[name] = False

    @rule(data=st.data(), verdict=st.sampled_from(VERDICTS))
    def probe(self, data, verdict):
        kpk = self.pick(data, self.keys)
        if kpk is None:
            return
        mkey = self.keys[kpk]
        self.tick(f"probe({mkey.label}, {verdict})")
        save_outcome(self.key_row(mkey), ProbeOutcome(verdict=verdict, status_code=200), trigger="schedule")
        self.expected["probe.run"] += 1
        mkey.verdict, mkey.probed_at = verdict, self.now

    @rule(days=st.sampled_from([1, 4, 16, 31]))
    def time_passes(self, days):
        self.clock.shift(timedelta(days=days))
        self.trace.append(f"time_passes({days} days)")

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def audit_chain_intact(self):
        check = verify_chain()
        assert check.broken is None, check.broken_sentence()

    @invariant()
    def each_audited_change_left_one_row(self):
        found = Counter(AuditEvent.objects.filter(action__in=AUDITED).values_list("action", flat=True))
        for action in AUDITED:
            assert found[action] == self.expected[action], (action, found[action], self.expected[action], self.trace)

    def expected_rows(self):
        now = self.now
        cutoff = now - timedelta(days=dj_settings.CONNECTION_STALE_DAYS)
        rows = {}
        for pk, a in self.assignments.items():
            k = self.keys[a.key]
            # Counted live once it fetched its key: one whose installer stopped on the machine never does.
            live = [d for d in self.devices.values() if d.assignment == pk and self.device_live(d) and d.last_seen_at]
            usable = k.state(now) == "active"
            fetched = any(d.assignment == pk and d.last_seen_at for d in self.devices.values())
            dl = a.last_download_at
            counts = k.probed_at is not None and k.probed_at >= k.config_changed_at
            states = set()
            if usable and dl is None and not fetched:
                states.add("never_downloaded")
            if (
                (dl and (dl < k.config_changed_at or dl < cutoff))
                or (dl and k.rotated_at and dl < k.rotated_at)
                or any(d.fetched_fp and d.fetched_fp != k.fp for d in live)
                or any(d.installed_at < k.settings_changed_at for d in live)
            ):
                states.add("stale")
            if usable and counts and k.verdict not in ("", "ok"):
                states.add("failing")
            if k.state(now) == "expired":
                states.add("expired")
            rows[pk] = {
                "user": a.user,
                "key_state": k.state(now),
                "live_devices": len(live),
                "live_devices_current": sum(
                    1 for d in live if d.installed_at >= k.settings_changed_at and d.fetched_fp == k.fp
                ),
                "latest_verdict": k.verdict if counts else "",
                "states": states,
            }
        return rows

    def connections(self, who, **query):
        response = self.api(who).get("/api/v1/connections/", {"limit": 1000, **query})
        assert response.status_code == 200, response.content
        body = response.content.decode()
        for secret in self.secrets:
            assert secret not in body
        return response.json()["results"]

    @invariant()
    def connections_match_the_model(self):
        expected = self.expected_rows()
        got = {row["assignment"]: row for row in self.connections("staff")}
        assert set(got) == set(expected), (sorted(got), sorted(expected), self.trace)
        for pk, want in expected.items():
            row = got[pk]
            for name in ("user", "key_state", "live_devices", "live_devices_current", "latest_verdict"):
                assert row[name] == want[name], (pk, name, row[name], want[name], self.trace)
        for state in ("never_downloaded", "stale", "failing", "expired"):
            listed = {row["assignment"] for row in self.connections("staff", state=state)}
            want = {pk for pk, w in expected.items() if state in w["states"]}
            assert listed == want, (state, sorted(listed), sorted(want), self.trace)

    @invariant()
    def an_auditor_sees_the_teams_connections(self):
        if not self.active["dave"] or self.members["web"].get("dave") != "auditor":
            return
        got = {row["assignment"] for row in self.connections("dave")}
        overseen = {t for t in TEAMS if self.members[t].get("dave") in ("admin", "auditor")}
        want = {pk for pk, a in self.assignments.items() if self.keys[a.key].team in overseen or a.user == "dave"}
        assert got == want, (sorted(got), sorted(want), self.trace)

    @invariant()
    def dashboard_counts_match_lists(self):
        sections = {s.slug: s for s in dashboard.dashboard_for(self.staff)}
        listed = len(self.connections("staff", state="never_downloaded"))
        assert sections["never_downloaded"].total == listed, (sections["never_downloaded"].total, listed, self.trace)
        now = self.now
        failing = [
            k
            for k in self.keys.values()
            if k.state(now) == "active"
            and k.probed_at
            and k.probed_at >= k.config_changed_at
            and k.verdict not in ("", "ok")
        ]
        assert sections["failing"].total == len(failing), (sections["failing"].total, len(failing), self.trace)
        window = now + timedelta(days=dj_settings.EXPIRY_WARNING_DAYS)
        expiring = [
            k for k in self.keys.values() if not k.revoked and k.enabled and k.expires_at and k.expires_at <= window
        ]
        assert sections["expiring"].total == len(expiring), (sections["expiring"].total, len(expiring), self.trace)
        rolling = set()
        for pk, a in self.assignments.items():
            k = self.keys[a.key]
            if not k.rotated_at or k.revoked:
                continue
            live = [d for d in self.devices.values() if d.assignment == pk and self.device_live(d)]
            if (a.last_download_at and a.last_download_at < k.rotated_at) or any(
                d.fetched_fp and d.fetched_fp != k.fp for d in live
            ):
                rolling.add(a.key)
        assert sections["rollouts"].total == len(rolling), (sections["rollouts"].total, len(rolling), self.trace)

    @invariant()
    def no_secret_in_audit_or_logs(self):
        text = json.dumps(list(AuditEvent.objects.values_list("target", "details")), default=str)
        for secret in self.secrets:
            assert secret not in text, (secret, self.trace)
        logged = "\n".join(self.handler.lines)
        for secret in self.secrets:
            assert secret not in logged, (secret, self.trace)


@pytest.mark.django_db
def test_the_portal_agrees_with_its_model_whatever_the_order_of_operations():
    run_state_machine_as_test(
        PortalMachine,
        settings=settings(
            max_examples=10,
            stateful_step_count=30,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert STATS["examples"] == 10  # every example ran to its end
