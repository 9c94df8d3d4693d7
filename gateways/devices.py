"""Live keys: a developer's device fetches its key from the portal each time Claude Code asks.

A device is made with a one-time install link (DEVICE_INSTALL_MINUTES), whose first use mints
the device's own token (scope: fetch this assignment's key, nothing else) and answers the
installer. The helper the installer writes calls `fetch_key` through GET /api/v1/device/key.

A fetch that changes nothing writes nothing: "last seen" is written at most once a minute
(a conditional UPDATE, so concurrent fetches write once), and the audit trail gets a row for a
device's first fetch, its first fetch after each rotation, at most one summary row a day, and
refusals (one per device, reason and day).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from gateways.config.formats import SHELL_SCRIPT
from gateways.models import (
    DEVICE_INSTALL_MINUTES,
    LAST_SEEN_EVERY_SECONDS,
    Assignment,
    Device,
    DeviceRemoval,
    Gateway,
    GatewayKey,
    KeyState,
    Platform,
    downloaded_before_a_change,
    replacement_for,
)
from gateways.services import record_key_event
from portal import audit
from portal.compiled_sql import CompiledRead, CompiledUpdate
from portal.crypto import DecryptionError, Secret, remember
from portal.errors import RuleError
from portal.http import public_url
from portal.models import (
    Action,
    AuditEvent,
    Membership,
    Team,
    TokenScope,
    mint_token,
    token_digest,
    token_lookup,
    token_matches,
)
from portal.names import clean_name
from portal.renames import current_name, rename_rows

CLAUDE_VERSION = re.compile(r"claude-cli/(\d{1,4}\.\d{1,4}\.\d{1,6})")
# curl asks for a shell script, so that a refused link answers one that prints why and exits 1 (see
# gateways.api.views.device_install); -f still keeps any error page out of sh. PowerShell asks for
# nothing: irm shows a refusal's sentence as its error and iex runs nothing.
SH_INSTALL_COMMAND = f"curl -fsSL -H 'Accept: {SHELL_SCRIPT}' '{{url}}' | sh"
INSTALL_COMMANDS = {
    Platform.LINUX: SH_INSTALL_COMMAND,
    Platform.MACOS: SH_INSTALL_COMMAND,
    Platform.WINDOWS: "irm '{url}' | iex",
}


class DeviceRefused(RuleError):
    """A device's install or key fetch is refused; `status` is the HTTP answer, the message says why."""

    def __init__(self, message: str, *, status: int, reason: str):
        super().__init__(message)
        self.status = status
        self.reason = reason


def portal_name() -> str:
    return settings.PORTAL_NAME


def _day(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d}"


def _minute(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M %Z}"


AGAIN = "run the install command again from My set-up"
# Why a device's fetch is refused: HTTP status and the sentence its helper prints for Claude Code.
# 401 only for a token the portal does not know; a known device gets 403 and the reason, because
# wget prints no body for a 401 and the helper must be able to show the sentence whatever it uses.
REFUSALS = {
    "unknown": (401, "{portal} does not know this device token; " + AGAIN + "."),
    "removed": (403, "This device was removed from {portal} by {who} on {date}; " + AGAIN + "."),
    "inactive": (403, "Your account in {portal} is deactivated, so this device gets no key."),
    "unassigned": (
        403,
        "The key {label} is no longer assigned to you in {portal}; ask your team admin, then " + AGAIN + ".",
    ),
    # Taken back and given again (a slip put right): the new assignment is not this device's, which was made for
    # the old one; a new install makes a device for the new one.
    "reassigned": (
        403,
        "This device was installed before the key {label} was taken back from you in {portal}; it is yours again: "
        + AGAIN
        + ".",
    ),
    KeyState.REVOKED: (403, "The key {label} was revoked in {portal}; ask your team admin for a new key."),
    # Revoked, and the holder has another usable key of the team (replacement_for): in the words of My set-up's
    # notice (HOLDER_NOTICES), so the helper does not ask for a key they already have.
    "revoked_replaced": (
        403,
        "The key {label} was revoked in {portal}; your team admin has given you the key {replacement} for the same "
        "gateway: use that one, with its install command from My set-up.",
    ),
    "revoked_replaced_elsewhere": (
        403,
        "The key {label} was revoked in {portal}; you also hold the key {replacement} of the same team, for another "
        "gateway ({gateway}), which needs a set-up of its own: if it takes this one's place, set that one up from "
        "My set-up; if not, ask your team admin for a new key.",
    ),
    KeyState.DISABLED: (
        403,
        "The key {label} is disabled in {portal} by your team admin; Claude Code works again once it is enabled.",
    ),
    KeyState.EXPIRED: (403, "The key {label} expired on {date} in {portal}; ask your team admin to renew it."),
    "unreadable": (503, "{portal} cannot open the key {label} right now; ask an administrator to check its keyring."),
}


def refusal(reason: str, device: Device | None = None) -> DeviceRefused:
    """The refusal for `reason`, worded for this device."""
    key = device.key if device else None
    replacement = None
    if reason == KeyState.REVOKED and device is not None:
        replacement = replacement_for(user_id=device.user_id, key=device.key)
    if replacement:
        status, sentence = REFUSALS[
            "revoked_replaced" if replacement.elsewhere is None else "revoked_replaced_elsewhere"
        ]
    else:
        status, sentence = REFUSALS[reason]
    when = None
    if reason == "removed" and device:
        when = device.revoked_at
    elif reason == KeyState.EXPIRED and key:
        when = key.expires_at
    text = sentence.format(
        portal=portal_name(),
        who=(device.revoked_by_username or "an admin") if device else "",
        date=_day(when) if when else "",
        label=repr(key.label) if key else "",
        replacement=repr(replacement.label) if replacement else "",
        gateway=replacement.elsewhere if replacement else "",
    )
    return DeviceRefused(text[0].upper() + text[1:], status=status, reason=reason)


def refusal_reason(device: Device, *, removal_counts: bool = True) -> str | None:
    """Why this installed device may not have its key now, or None when it may (its removal left out when
    `removal_counts` is False: what else would refuse it)."""
    if device.revoked_at and removal_counts:
        return "removed"
    if not device.user.is_active:
        return "inactive"
    if device.assignment_id is None:
        return "unassigned"
    state = device.key.state
    return None if state == KeyState.ACTIVE else state


def clean_device(name: str, platform: str) -> tuple[str, str]:
    """A device's name (one line, 1 to 100 characters) and platform, or a RuleError."""
    name = clean_name(
        name if isinstance(name, str) else "",
        what="device name",
        field="name",
        empty="Name the device, such as 'work laptop', so you can tell it apart later.",
        max_length=100,
    )
    if platform not in Platform.values:
        raise RuleError(f"platform must be one of {', '.join(Platform.values)}.", field="platform")
    return name, platform


def install_url(request: HttpRequest, code: str) -> str:
    """The one-time install link, at PORTAL_URL when it is set: it is pasted on another machine, like an invitation."""
    return public_url(request, reverse("api-device-install", args=[code]))


def key_url(request: HttpRequest) -> str:
    """Where an installed helper fetches its key, at the same public address as the install link it came by."""
    return public_url(request, reverse("api-device-key"))


def install_command(url: str, platform: str) -> str:
    """The one line a developer pastes: `curl … | sh` on macOS and Linux, `irm … | iex` in PowerShell."""
    return INSTALL_COMMANDS[platform].format(url=url.replace("'", "%27"))


@transaction.atomic
def create_device(
    *, assignment: Assignment, name: str, platform: str, actor, request: HttpRequest | None = None
) -> tuple[Device, str]:
    """Make a device and its one-time install code; returns (device, code). The code is shown once.

    The caller read the assignment before this transaction began, so it is locked and read again here, after
    the owner's membership (locked first, as assign_key does): a removal at this moment (remove_member and
    offboarding lock the membership, remove_assignment the assignment) either waits, then takes the new
    device's assignment back with the rest, or has already removed it, and the request gets the sentence.
    """
    name, platform = clean_device(name, platform)
    key = assignment.key
    Membership.objects.select_for_update().filter(team_id=key.team_id, user_id=assignment.user_id).first()
    if not Assignment.objects.select_for_update().filter(pk=assignment.pk).exists():
        raise refusal("unassigned", Device(key=key, user=assignment.user))
    if not key.is_usable:
        raise refusal(key.state, Device(key=key, user=assignment.user))
    _replace_waiting_links(assignment, name, platform, actor=actor, request=request)
    lookup_id = secrets.token_hex(6)
    code = f"{lookup_id}_{secrets.token_urlsafe(24)}"
    remember(code)
    device = Device.objects.create(
        user=assignment.user,
        key=key,
        assignment=assignment,
        name=name,
        platform=platform,
        install_lookup_id=lookup_id,
        install_digest=token_digest(code),
        install_expires_at=timezone.now() + timedelta(minutes=DEVICE_INSTALL_MINUTES),
    )
    record_key_event(
        Action.DEVICE_CREATED,
        key,
        actor=actor,
        request=request,
        details={"device": device.pk, "name": name, "platform": platform, "user": assignment.user.get_username()},
    )
    return device, code


def _replace_waiting_links(
    assignment: Assignment, name: str, platform: str, *, actor, request: HttpRequest | None
) -> None:
    """Remove the set-up's install links for this device name and platform that still wait for their one use.

    A request sent again because its answer was lost (a retrying client), or a second click, would otherwise
    leave two links live for their minutes, one of them never seen, and an unused device listed for ever: the
    link the caller holds now is the one that stays. An installed device is never touched. The earlier link, run
    after all, says a newer one replaced it (_install_refusal), and no device list shows it (DeviceQuerySet.listed).
    """
    waiting = Device.objects.select_for_update(of=("self",)).filter(
        assignment=assignment,
        name=name,
        platform=platform,
        installed_at__isnull=True,
        revoked_at__isnull=True,
        install_expires_at__gt=timezone.now(),
    )
    for earlier in waiting:
        remove_device(device=earlier, actor=actor, request=request, reason=DeviceRemoval.REPLACED)


def _install_refusal(device: Device, now: datetime) -> DeviceRefused | None:
    again = f"make a new install link under Install on a new device on My set-up in {portal_name()}"
    if device.installed_at:
        return DeviceRefused(
            f"This install link was already used on {_minute(device.installed_at)}; it works once. {again[0].upper()}"
            f"{again[1:]}.",
            status=410,
            reason="used",
        )
    if device.removed_reason == DeviceRemoval.REPLACED:
        # Instead of refusal_reason's "removed by <who>": nobody removed it. But what would refuse the newer link
        # too (the key revoked, taken back, the account deactivated) is said first: "run the newest link" would fail.
        if reason := refusal_reason(device, removal_counts=False):
            return refusal(reason, device)
        return DeviceRefused(
            f"This install link was replaced on {_minute(device.revoked_at or now)} by a newer one for a device of "
            f"the same name ({device.name!r}, {device.get_platform_display()}): run the newest link, or {again}. "
            "To install on two machines, give each its own name.",
            status=410,
            reason="replaced",
        )
    reason = refusal_reason(device)
    if reason:
        return refusal(reason, device)
    if device.install_expires_at <= now:
        return DeviceRefused(
            f"This install link expired at {_minute(device.install_expires_at)}, {DEVICE_INSTALL_MINUTES} minutes "
            f"after it was made; {again}.",
            status=410,
            reason="expired",
        )
    return None


@sensitive_variables("code", "raw")
def install_device(*, code: str, request: HttpRequest | None, render) -> tuple[Device, str]:
    """Use a one-time install code: mint the device token and return (device, render(device, token)).

    `render` builds the installer; it runs inside the transaction that mints the token, so an
    installer that cannot be written mints nothing. A used, expired or unknown code, a removed
    device or assignment, or an unusable key raises DeviceRefused, and nothing is minted.
    """
    lookup_id, _, _ = code.partition("_")
    device = (
        Device.objects.select_related("key__gateway", "key__team", "user", "assignment")
        .filter(install_lookup_id=lookup_id[:16])
        .first()
    )
    if not token_matches(device.install_digest if device else None, code) or device is None:
        raise DeviceRefused(
            f"This install link is not one {portal_name()} made; copy the whole command from My set-up.",
            status=404,
            reason="unknown",
        )
    now = timezone.now()
    problem = _install_refusal(device, now)
    if problem:
        raise problem
    token_lookup_id, raw = mint_token(TokenScope.KEY_FETCH)
    with transaction.atomic():
        claimed = Device.objects.filter(
            pk=device.pk,
            installed_at__isnull=True,
            revoked_at__isnull=True,
            assignment__isnull=False,
            install_expires_at__gt=now,
        ).update(installed_at=now, token_lookup_id=token_lookup_id, token_digest=token_digest(raw))
        if not claimed:  # another request used the link a moment ago, or it was removed meanwhile
            device.refresh_from_db()
            raise _install_refusal(device, now) or refusal("unknown")
        device.installed_at, device.token_lookup_id = now, token_lookup_id
        record_key_event(
            Action.DEVICE_INSTALLED,
            device.key,
            actor=device.user,
            request=request,
            details={"device": device.pk, "name": device.name, "platform": device.platform},
        )
        return device, render(device, raw)


def _record_refusal(device: Device, reason: str, request: HttpRequest | None, today) -> None:
    """One device.fetch_refused row per device, reason and day: a helper retrying every few minutes adds none."""
    if device.refusal_reason == reason and device.refusal_audited_on == today:
        return
    with transaction.atomic():
        changed = (
            Device.objects.filter(pk=device.pk)
            .exclude(refusal_reason=reason, refusal_audited_on=today)
            .update(refusal_reason=reason, refusal_audited_on=today)
        )
        if changed:
            record_key_event(
                Action.DEVICE_FETCH_REFUSED,
                _named_for_audit(device.key),
                actor=device.user,
                request=request,
                details={"device": device.pk, "name": device.name, "reason": reason},
            )


def _fetch_audit_reason(device: Device, fingerprint: str, today) -> str:
    """Which key.fetched row this fetch earns: first, rotated, daily, or none ("")."""
    if device.last_seen_at is None:
        return "first"
    if device.fetched_fingerprint != fingerprint:
        return "rotated"
    if device.fetch_audited_on != today:
        return "daily"
    return ""


def _note_fetch(device: Device, request: HttpRequest | None, now: datetime) -> None:
    """Write last seen (at most once a minute) and earn the audit rows; a fetch that changes nothing writes nothing."""
    today = timezone.localdate(now)
    fingerprint = device.key.fingerprint
    reason = _fetch_audit_reason(device, fingerprint, today)
    cutoff = now - timedelta(seconds=LAST_SEEN_EVERY_SECONDS)
    if not reason and device.last_seen_at is not None and device.last_seen_at >= cutoff:
        return
    user_agent = request.META.get("HTTP_USER_AGENT", "") if request else ""
    version = CLAUDE_VERSION.search(user_agent)
    seen = {
        "last_seen_at": now,
        "last_seen_ip": audit.client_ip(request),
        "claude_version": version.group(1) if version else device.claude_version,
        "fetched_fingerprint": fingerprint,
        "fetch_audited_on": today,
    }
    # Written only if no other fetch wrote since this one read the row: of concurrent fetches, one
    # writes and earns the audit row.
    if not reason:  # a plain refresh of last seen: one statement, a transaction of its own
        _SEEN.update(device.pk, device.last_seen_at, seen)
        return
    with transaction.atomic():
        if _SEEN.update(device.pk, device.last_seen_at, seen):
            record_key_event(
                Action.DEVICE_KEY_FETCHED,
                _named_for_audit(device.key),
                actor=device.user,
                request=request,
                details={"device": device.pk, "name": device.name, "reason": reason, "masked": device.key.masked},
            )


# What a fetch that is due writes (see _note_fetch): every few minutes for each device in use.
_SEEN = CompiledUpdate(
    Device,
    fields=("last_seen_at", "last_seen_ip", "claude_version", "fetched_fingerprint", "fetch_audited_on"),
    expect="last_seen_at",
)

# The team and gateway an audit row names, read only by a fetch that earns one (a device's first, the
# first after a rotation, one a day, a refusal): several devices' first fetches of the day come at once.
_TEAM_FOR_AUDIT = CompiledRead(Team, where=("pk",), fields={"": {"id", "slug"}})
_GATEWAY_FOR_AUDIT = CompiledRead(Gateway, where=("pk",), fields={"": {"id", "slug"}})


def _named_for_audit(key: GatewayKey) -> GatewayKey:
    """The fetched key with its team and gateway attached, as key_event names them (two compiled reads)."""
    for name, read in (("team", _TEAM_FOR_AUDIT), ("gateway", _GATEWAY_FOR_AUDIT)):
        if not getattr(GatewayKey, name).is_cached(key):  # the descriptor: loaded with the key?
            setattr(key, name, read.get(getattr(key, f"{name}_id")))
    return key


# What a fetch reads: the device's state, its key's state and ciphertext, its owner's. Its SQL is
# compiled once per thread (portal.compiled_sql): this read is on every developer's path to the
# gateway. The team and gateway an audit row names are read only by a fetch that earns one (above).
_DEVICE_FOR_FETCH = CompiledRead(
    Device,
    where=("token_lookup_id",),
    related=("key", "user"),
    fields={
        "": {
            "id",
            "user_id",
            "key_id",
            "assignment_id",
            "name",
            "token_digest",
            "revoked_at",
            "revoked_by_username",
            "last_seen_at",
            "claude_version",
            "fetched_fingerprint",
            "fetch_audited_on",
            "refusal_reason",
            "refusal_audited_on",
        },
        "key": {
            "id",
            "team_id",
            "gateway_id",
            "label",
            "secret_ciphertext",
            "masked",
            "fingerprint",
            "expires_at",
            "is_enabled",
            "revoked_at",
        },
        "user": {"id", get_user_model().USERNAME_FIELD, "is_active"},
    },
)


def device_for_fetch(lookup_id: str) -> Device | None:
    """The device with this token lookup id, with its key and owner (only what a fetch reads): one SELECT."""
    return _DEVICE_FOR_FETCH.get(lookup_id)


@sensitive_variables("raw_token", "secret")
def fetch_key(*, raw_token: str, request: HttpRequest | None) -> Secret:
    """The plaintext secret for the device whose token this is, or DeviceRefused with the sentence to print."""
    lookup_id = token_lookup(raw_token, TokenScope.KEY_FETCH)
    device = None
    if lookup_id:
        device = device_for_fetch(lookup_id)
    if not token_matches(device.token_digest if device else None, raw_token) or device is None:
        raise refusal("unknown")
    now = timezone.now()
    reason = refusal_reason(device)
    if reason == "unassigned" and Assignment.objects.filter(key_id=device.key_id, user_id=device.user_id).exists():
        # Given again: a new install would work, unless the key itself now refuses (then its state says why).
        state = device.key.state
        reason = "reassigned" if state == KeyState.ACTIVE else state
    if reason is None:
        try:
            secret = device.key.reveal_secret()
        except DecryptionError:
            reason = "unreadable"
    if reason:
        _record_refusal(device, reason, request, timezone.localdate(now))
        raise refusal(reason, device)
    _note_fetch(device, request, now)
    return secret


@transaction.atomic
def remove_device(
    *, device: Device, actor, request: HttpRequest | None = None, reason: DeviceRemoval | None = None
) -> Device:
    """Revoke a device at once: its next fetch is refused with who removed it and when. `reason` is given when the
    portal, not a person, decided it (a link replaced before its use): kept on the device, and said in the audit row.
    """
    device = (
        Device.objects.select_for_update(of=("self",))  # the device's row, not its key's, team's or user's
        .select_related("key__gateway", "key__team", "user")
        .get(pk=device.pk)
    )
    if device.revoked_at:
        return device
    device.revoked_at = timezone.now()
    device.revoked_by = actor
    device.revoked_by_username = actor.get_username() if actor else ""
    device.removed_reason = reason or ""
    device.save(update_fields=["revoked_at", "revoked_by", "revoked_by_username", "removed_reason"])
    record_key_event(
        Action.DEVICE_REMOVED,
        device.key,
        actor=actor,
        request=request,
        details={
            "device": device.pk,
            "name": device.name,
            "user": device.user.get_username(),
            **({"reason": reason.label} if reason else {}),
        },
    )
    return device


def rollout(key: GatewayKey) -> dict:
    """After a rotation or a settings change: how many live devices are done, and who must download again.

    `current` counts the live devices holding the new secret and installed since the key's settings or its
    gateway's last changed; `reinstall` those installed before (their settings.json holds the old settings).
    `static` counts the developers holding a static copy (downloaded or shown): the gateway takes it until the
    key is rotated there or deleted; `static_stale` those whose copy predates the key's last change.
    """
    live = list(key.devices.live().only("key_id", "installed_at", "fetched_fingerprint"))
    for device in live:
        device.key = key
    reinstall = sum(device.needs_reinstall for device in live)
    current = sum(device.has_current_secret and not device.needs_reinstall for device in live)
    holders = key.assignments.filter(last_download_at__isnull=False).aggregate(
        static=Count("user", distinct=True),
        static_stale=Count("user", distinct=True, filter=downloaded_before_a_change()),
    )
    return {"live": len(live), "current": current, "reinstall": reinstall, **holders}


# The events that record a leaver's static copies (details["static_copies"]: team slug and short fingerprint each).
LEAVING_ACTIONS = (Action.MEMBER_REMOVED, Action.MEMBER_OFFBOARDED, Action.USER_OFFBOARDED)


def copies_out(key: GatewayKey) -> int:
    """How many developers took a copy of the key's present secret out of the portal (downloaded or shown), those
    who have left the team or had the key taken back since included: what the gateway still accepts after a
    revocation, until the key is deleted there. A copy of an earlier secret does not count: the rotation was the
    moment to drop that one at the gateway. Former holders are read from their events (a leaver's, or the key's
    *Assignment removed*), which name the secret by its short fingerprint.

    Counted per account: a row names the holder by the user name it had then, and staff may have renamed accounts
    since (portal.renames), so each former holder is counted under the name its account has now, as present holders
    are. A fixed number of queries, however many rows and renames."""
    people = set(key.assignments.holding_present_secret().values_list("user__username", flat=True))
    leaving = Q(Q(team=key.team) | Q(team__isnull=True), action__in=LEAVING_ACTIONS)
    # An assignment's removal is in the key's own trail (its target is the key), naming the holder in details.
    taken_back = Q(team=key.team, action=Action.ASSIGNMENT_REMOVED, target=key.short_fingerprint)
    events = AuditEvent.objects.filter(leaving | taken_back, created_at__gte=key.created_at)
    renames = None
    for action, target, details, created_at in events.values_list("action", "target", "details", "created_at"):
        copies = details.get("static_copies", []) if isinstance(details, dict) else []
        if any(c.get("team") == key.team.slug and c.get("key") == key.short_fingerprint for c in copies):
            if renames is None:
                renames = rename_rows(since=key.created_at)
            name = details.get("user") if action == Action.ASSIGNMENT_REMOVED else target
            people.add(current_name(name, created_at, renames))
    return len(people)


def developers_holding(count: int) -> str:
    """'1 developer holds' or '3 developers hold': the start of a sentence about static copies."""
    return f"{count} developer{pluralize(count)} {'holds' if count == 1 else 'hold'}"


def rotation_sentence(counts: dict) -> str:
    """What a rotation asks of the key's holders (rollout's counts): static copies are downloaded again, while
    live devices fetch the new secret by themselves."""
    static, live = counts["static"], counts["live"]
    if not static and not live:
        return "No developer holds a copy of it yet"
    if static:
        said = f"{developers_holding(static)} a static copy and must download again"
    else:
        said = "No developer holds a static copy"
    if live:
        said += f"; {live} live device{pluralize(live)} {'fetches' if live == 1 else 'fetch'} the new secret by "
        said += "itself" if live == 1 else "themselves"
    return said
