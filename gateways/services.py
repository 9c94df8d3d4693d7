"""State changes for gateways, keys and assignments, each with its audit event in one transaction."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from types import EllipsisType
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from gateways import events, notices, rules
from gateways.models import (
    GATEWAY_FIELDS,
    INSTALLED_GATEWAY_FIELDS,
    KEY_OVERRIDE_FIELDS,
    KEY_SETTING_FIELDS,
    Assignment,
    Gateway,
    GatewayKey,
    replacement_advice,
)
from gateways.rules import RuleError
from portal import audit, stamps
from portal.crypto import Secret
from portal.models import Action, AuditEvent, Membership, Team
from portal.services import clean_slug, find_user, refuse_taken_slug
from portal.times import iso_time


@transaction.atomic
def create_gateway(*, slug: str, actor, request: HttpRequest | None = None, **fields) -> tuple[Gateway, list[str]]:
    unknown = set(fields).difference(GATEWAY_FIELDS)
    if unknown:
        raise RuleError(f"Unknown gateway fields: {', '.join(sorted(unknown))}.")
    slug = clean_slug(slug)
    refuse_taken_slug(Gateway, slug)
    cleaned, notices = rules.clean_gateway_fields(fields, style=fields.get("model_id_style", "as-is"))
    try:
        with transaction.atomic():
            gateway = Gateway.objects.create(slug=slug, **cleaned)
    except IntegrityError:  # the same slug added at the same moment: the constraint decides
        refuse_taken_slug(Gateway, slug)
        raise
    audit.record(
        Action.GATEWAY_CREATED,
        actor=actor,
        request=request,
        gateway_slug=slug,
        target=slug,
        details={"base_url": gateway.base_url, "auth_scheme": gateway.auth_scheme},
    )
    return gateway, notices


def refuse_changed_since(gateway: Gateway, opened_at: datetime) -> None:
    """Refuse a form posted back over a change saved after it was shown: it would put the old values back.

    `gateway` is the row as read under lock; `opened_at` its updated_at when the form was shown.
    """
    if gateway.updated_at == opened_at:
        return
    last = (
        AuditEvent.objects.filter(action=Action.GATEWAY_UPDATED, gateway_slug=gateway.slug)
        .only("actor_username", "created_at", "details")
        .order_by("-id")
        .first()
    )
    if last is None:
        what = f"{gateway.name} was changed"
    else:
        fields = ", ".join(last.details.get("changed") or {}) or "its settings"
        when = timezone.localtime(last.created_at).strftime("%Y-%m-%d %H:%M %Z")
        what = f"{last.actor_username or 'someone'} changed {fields} at {when}"
    raise RuleError(
        f"Another change was saved since you opened this page: {what}. Nothing was saved: reload it to see "
        "that change, then make yours again."
    )


@transaction.atomic
def update_gateway(
    *,
    gateway: Gateway,
    changes: dict,
    actor,
    request: HttpRequest | None = None,
    opened_at: datetime | None = None,
) -> list[str]:
    """Change only the given fields; a preset keeps every rule that is not named.

    The row is read again under lock and only the fields that differ are written: `gateway` may have
    been read before another change was saved, and writing all of it back would undo that change
    unrecorded. A form that posts every field back passes the updated_at it showed as `opened_at`
    (refuse_changed_since). `gateway` is left as saved.
    """
    unknown = set(changes).difference(GATEWAY_FIELDS)
    if unknown:
        raise RuleError(f"Unknown gateway fields: {', '.join(sorted(unknown))}.")
    current = Gateway.objects.select_for_update().get(pk=gateway.pk)
    if opened_at is not None:
        refuse_changed_since(current, opened_at)
    style = changes.get("model_id_style", current.model_id_style)
    cleaned, notices = rules.clean_gateway_fields(changes, style=style)
    changed = {
        name: {"from": getattr(current, name), "to": value}
        for name, value in cleaned.items()
        if getattr(current, name) != value
    }
    if changed:
        for name, value in cleaned.items():
            setattr(current, name, value)
        written = [*changed, "updated_at"]
        if "base_url" in changed:
            current.credential_headers = {}  # seen at another address: the next probe looks again
            written.append("credential_headers")
        current.save(update_fields=written)
        if changed.keys() & set(INSTALLED_GATEWAY_FIELDS):
            # What a download sets changed: earlier downloads are stale, live devices installed before must
            # install again, and a probe before it tested the old settings. A name, notes, docs or probe
            # settings change none of that (the next probe uses new probe settings; the verdict stands).
            now = timezone.now()
            GatewayKey.objects.filter(gateway=current).update(config_changed_at=now, settings_changed_at=now)
        audit.record(
            Action.GATEWAY_UPDATED,
            actor=actor,
            request=request,
            gateway_slug=current.slug,
            target=current.slug,
            details={"changed": changed},
        )
    for field in Gateway._meta.concrete_fields:
        setattr(gateway, field.attname, getattr(current, field.attname))
    return notices


def key_event(
    action: str, key: GatewayKey, *, actor=None, request: HttpRequest | None = None, details: dict | None = None
) -> AuditEvent:
    """An audit event about a key, not yet written: its team, gateway, fingerprint, label and id (never the secret).

    The id is what ties a key's rows together: the target names the secret in force, which a rotation changes,
    and the label changes with a relabel.
    """
    return audit.new_event(
        action,
        actor=actor,
        request=request,
        team=key.team,
        gateway_slug=key.gateway.slug,
        target=key.short_fingerprint,
        details={"label": key.label, "key_id": str(key.pk), **(details or {})},
    )


def record_key_event(
    action: str, key: GatewayKey, *, actor=None, request: HttpRequest | None = None, details: dict | None = None
) -> AuditEvent:
    """Write key_event(...) to the audit trail."""
    event = key_event(action, key, actor=actor, request=request, details=details)
    audit.append([event])
    return event


def clean_key_settings(settings: dict, *, gateway: Gateway) -> dict:
    cleaned = {name: value for name, value in settings.items() if name in KEY_SETTING_FIELDS}
    return rules.clean_key_overrides(cleaned, style=gateway.model_id_style)  # the label too (rules.KEY_RULES)


def _refuse_shared_label(team: Team, label: str, *, exclude: GatewayKey | None = None) -> None:
    # NFC, as labels are stored (portal.names): the admin's form asks before its label is cleaned.
    label = unicodedata.normalize("NFC", label)
    same = GatewayKey.objects.filter(team=team, label=label, revoked_at__isnull=True)
    if exclude is not None:
        same = same.exclude(pk=exclude.pk)
    if same.exists():
        raise RuleError(
            f"{team.slug} already has a key labelled {label!r}. Give this one another label, such as "
            f"{label + ' 2'!r}, so people can tell them apart.",
            field="label",
        )


def _refuse_duplicate(team: Team, fingerprint: str, *, exclude: GatewayKey | None = None) -> None:
    duplicates = GatewayKey.objects.filter(team=team, fingerprint=fingerprint)
    if exclude is not None:
        duplicates = duplicates.exclude(pk=exclude.pk)
    existing = duplicates.first()
    if existing and existing.revoked_at:  # its ciphertext is gone; its fingerprint stays, to refuse it again
        raise RuleError(
            f"This secret belonged to {existing.label!r} in {team.slug}, which was revoked: a revoked secret is "
            "not taken back. Issue a new key at the gateway and store that one.",
            field="secret",
        )
    if existing:
        raise RuleError(
            f"This secret is already stored in {team.slug} as {existing.label!r} (id {existing.pk}); it was not "
            "saved twice.",
            field="secret",
        )


@sensitive_variables("secret")
@transaction.atomic
def store_key(
    *,
    team: Team,
    gateway: Gateway,
    label: str,
    secret: str,
    actor,
    request: HttpRequest | None = None,
    expires_at: datetime | None = None,
    **settings,
) -> GatewayKey:
    """Encrypt and store a team's key for a gateway."""
    secret = rules.clean_secret(secret, requires_sk_prefix=gateway.requires_sk_prefix)
    cleaned = clean_key_settings({"label": label, "expires_at": expires_at, **settings}, gateway=gateway)
    key = GatewayKey(team=team, gateway=gateway, created_by=actor if actor and actor.pk else None, **cleaned)
    key.set_secret(secret)
    _refuse_duplicate(team, key.fingerprint)
    _refuse_shared_label(team, key.label)
    try:
        with transaction.atomic():
            key.save()
    except IntegrityError:  # the same secret or label saved at the same moment: the constraints decide
        _refuse_duplicate(team, key.fingerprint)
        _refuse_shared_label(team, key.label)
        raise
    record_key_event(
        Action.KEY_CREATED,
        key,
        actor=actor,
        request=request,
        details={"label": key.label, "masked": key.masked},
    )
    return key


def _changeable_key(key: GatewayKey) -> GatewayKey:
    """The key's row, locked for the change; a revoked key is never changed again.

    Only the key's row (of=self): locking its team and gateway too would hold up every new key of the
    team, whose row refers to them, and deadlock with one being stored with the secret this change sets.
    """
    key = GatewayKey.objects.select_for_update(of=("self",)).select_related("gateway", "team").get(pk=key.pk)
    if key.revoked_at:
        raise RuleError("This key is revoked; store a new key instead of changing it.")
    return key


@transaction.atomic
def update_key_settings(*, key: GatewayKey, changes: dict, actor, request: HttpRequest | None = None) -> GatewayKey:
    """Change a key's label, expiry or overrides (KEY_SETTING_FIELDS); an override's change makes earlier downloads stale."""
    key = _changeable_key(key)
    cleaned = clean_key_settings(changes, gateway=key.gateway)
    changed = {}
    for name, value in cleaned.items():
        # Expiries compare to the second (rules.clean_expiry): one stored with milliseconds before that rule is
        # the same expiry as the form's, which shows whole seconds.
        same = rules.to_the_second(getattr(key, name)) == value if name == "expires_at" else getattr(key, name) == value
        if not same:
            changed[name] = {"from": _jsonable(getattr(key, name)), "to": _jsonable(value)}
            setattr(key, name, value)
    if not changed:
        return key
    if "label" in changed:
        _refuse_shared_label(key.team, key.label, exclude=key)
    if "expires_at" in changed:
        key.expiry_recorded_at = None  # a renewed key may expire, and be recorded, again
    if changed.keys() & set(KEY_OVERRIDE_FIELDS):
        # What a download sets changed (a label or an expiry is in none): earlier downloads are stale, live
        # devices must install again, and a probe before it tested the old settings.
        key.config_changed_at = key.settings_changed_at = timezone.now()
    try:
        with transaction.atomic():
            key.save()
    except IntegrityError:  # renamed to the same label at the same moment: the constraint decides
        _refuse_shared_label(key.team, key.label, exclude=key)
        raise
    record_key_event(Action.KEY_UPDATED, key, actor=actor, request=request, details={"changed": changed})
    return key


@sensitive_variables("secret")
@transaction.atomic
def rotate_key_secret(
    *,
    key: GatewayKey,
    secret: str,
    actor,
    request: HttpRequest | None = None,
    expires_at: datetime | EllipsisType | None = ...,
) -> GatewayKey:
    """Replace a key's secret, and its expiry when one is given (None: it does not expire; ...: unchanged),
    since a new secret from the gateway's console usually comes with its own; developers must download again."""
    key = _changeable_key(key)
    old_masked, old_fingerprint, old_short = key.masked, key.fingerprint, key.short_fingerprint
    details: dict[str, Any] = {}
    if not isinstance(expires_at, EllipsisType):
        expires_at = rules.clean_expiry(expires_at)
        if rules.to_the_second(key.expires_at) != expires_at:
            # Recorded as a settings change records it, in this rotation's audit row.
            details["changed"] = {"expires_at": {"from": _jsonable(key.expires_at), "to": _jsonable(expires_at)}}
            key.expires_at, key.expiry_recorded_at = expires_at, None
    key.set_secret(rules.clean_secret(secret, requires_sk_prefix=key.gateway.requires_sk_prefix))
    if key.fingerprint == old_fingerprint:
        # Not a rotation: every copy out there still works, and holders would be told to download for nothing.
        raise RuleError(
            "That is the key's present secret. Paste the new one from the gateway's console; to change only the "
            "expiry, use the key's settings.",
            field="secret",
        )
    _refuse_duplicate(key.team, key.fingerprint, exclude=key)
    key.config_changed_at = key.rotated_at = timezone.now()  # not settings_changed_at: the helper fetches the key
    try:
        with transaction.atomic():
            key.save()
    except IntegrityError:  # the same secret stored at the same moment: the constraint decides
        _refuse_duplicate(key.team, key.fingerprint, exclude=key)
        raise
    record_key_event(
        Action.KEY_ROTATED,
        key,
        actor=actor,
        request=request,
        # The replaced secret by its fingerprint too: the target of the key's rows before this one.
        details={"from": old_masked, "to": key.masked, "previous_fingerprint": old_short, **details},
    )
    events.key_rotated.send(sender=GatewayKey, key=key, actor=actor)
    return key


@transaction.atomic
def set_key_enabled(*, key: GatewayKey, enabled: bool, actor, request: HttpRequest | None = None) -> GatewayKey:
    """Enable or disable a key; a disabled key yields no configuration until it is enabled again."""
    key = _changeable_key(key)
    if key.is_enabled == enabled:
        return key
    key.is_enabled = enabled
    record_key_event(Action.KEY_ENABLED if enabled else Action.KEY_DISABLED, key, actor=actor, request=request)
    key.save(update_fields=["is_enabled"])
    return key


@transaction.atomic
def revoke_key(*, key: GatewayKey, actor, request: HttpRequest | None = None) -> GatewayKey:
    """Revoke for good: the ciphertext is destroyed, so no later download can carry it."""
    key = GatewayKey.objects.select_for_update(of=("self",)).select_related("gateway", "team").get(pk=key.pk)
    if key.revoked_at:
        return key
    key.revoked_at = timezone.now()
    # With its key id: a row that holds no secret needs no vault key (readyz, and removing an old key after a rotation).
    key.secret_ciphertext, key.secret_key_id = "", ""
    key.save(update_fields=["revoked_at", "secret_ciphertext", "secret_key_id"])
    record_key_event(
        Action.KEY_REVOKED,
        key,
        actor=actor,
        request=request,
        details={"label": key.label, "masked": key.masked, "assignments": key.assignments.count()},
    )
    events.key_revoked.send(sender=GatewayKey, key=key, actor=actor)
    return key


def record_expirations() -> int:
    """Write one key.expired event for each key that expired since the last call; return how many."""
    now = timezone.now()
    expired = GatewayKey.objects.filter(
        expires_at__lte=now, expiry_recorded_at__isnull=True, revoked_at__isnull=True
    ).select_related("team", "gateway")
    count = 0
    for key in expired:
        with transaction.atomic():
            if not GatewayKey.objects.filter(pk=key.pk, expiry_recorded_at__isnull=True).update(expiry_recorded_at=now):
                continue  # another run recorded it first
            record_key_event(
                Action.KEY_EXPIRED,
                key,
                # In TIME_ZONE, as the row's own time is written: the day the admin typed.
                details={"label": key.label, "expired_at": iso_time(key.expires_at)},
            )
            events.key_expired.send(sender=GatewayKey, key=key)
            count += 1
    return count


@transaction.atomic
def assign_key(*, key: GatewayKey, username: str, actor, request: HttpRequest | None = None) -> Assignment:
    user = find_user(username)
    # The membership stays locked until the assignment is in: a removal of the member at the same moment
    # (portal.services.remove_member locks the same row) waits and takes it back, or this finds them gone.
    if Membership.objects.select_for_update().filter(team=key.team, user=user).first() is None:
        raise RuleError(f"{username} is not a member of {key.team.slug}. Add them to the team first.", field="username")
    if key.revoked_at:
        raise RuleError("This key is revoked and cannot be assigned.")
    assignment, created = Assignment.objects.get_or_create(key=key, user=user, defaults={"assigned_by": actor})
    if not created:
        raise RuleError(f"{username} already has this key (assignment {assignment.pk}).", field="username")
    # Giving oneself a key is how an admin can read it back: its own event, and the other admins hear of it.
    self_assigned = assignment.is_self_assigned
    record_key_event(
        Action.ASSIGNMENT_SELF_ASSIGNED if self_assigned else Action.ASSIGNMENT_CREATED,
        key,
        actor=actor,
        request=request,
        details={"user": username, "label": key.label, **({"masked": key.masked} if self_assigned else {})},
    )
    if self_assigned:
        transaction.on_commit(lambda: notices.notify_self_assignment(assignment, request))
    return assignment


@transaction.atomic
def remove_member_assignments(*, team: Team, user, actor=None, request: HttpRequest | None = None) -> dict:
    """Take back the team's keys from a member who leaves it, each with its own event in the key's trail.

    Returns what the member-removed event records: the keys' short fingerprints, and the keys whose config the
    member downloaded (or was shown) while still alive, as offboarding lists them: only a rotation stops that copy.
    """
    # Locked, so that one an admin unassigns at this moment is taken back, and recorded, by one of the two only.
    removed = list(
        Assignment.objects.select_for_update(of=("self",))
        .filter(key__team=team, user=user)
        .select_related("key__team", "key__gateway")
    )
    Assignment.objects.filter(pk__in=[a.pk for a in removed]).delete()
    record_assignments_removed(removed, user=user, reason="left the team", actor=actor, request=request)
    taken_back: dict = {
        "assignments_removed": [a.key.short_fingerprint for a in removed],
        # By name too: adding the member back brings none back, so the admin must know which to assign again.
        "keys_taken_back": [a.key.label for a in removed],
    }
    if copies := [copy for a in removed if (copy := static_copy(a))]:
        taken_back["static_copies"] = copies
    return taken_back


def record_assignments_removed(
    assignments: list[Assignment], *, user, reason: str, actor=None, request: HttpRequest | None = None
) -> None:
    """An *Assignment removed* event in each key's trail, as removing one assignment writes, for assignments taken
    back together (a member leaving, an offboarding): an auditor reading a key's trail sees who lost it and why,
    and, as remove_assignment's row, the copy of its present secret they left with (static_copy)."""
    details = {"user": user.get_username(), "reason": reason}
    audit.append(
        [
            key_event(
                Action.ASSIGNMENT_REMOVED,
                a.key,
                actor=actor,
                request=request,
                details={**details, **({"static_copies": [copy]} if (copy := static_copy(a)) else {})},
            )
            for a in assignments
        ]
    )


def static_copy(assignment: Assignment) -> dict | None:
    """The copy of its key's present secret the holder took out of the portal (downloaded or shown), as a removal's
    audit row names it, or None: the gateway still accepts it once the assignment is gone (devices.copies_out)."""
    key = assignment.key
    if not assignment.holds_present_secret or key.revoked_at is not None:
        return None
    return {"id": str(key.pk), "team": key.team.slug, "key": key.short_fingerprint, "label": key.label}


@transaction.atomic
def remove_assignment(*, assignment: Assignment, actor, request: HttpRequest | None = None) -> None:
    """Take a key back from one holder; a copy of its present secret they took out is named in the audit row,
    since revoking the key later must still count it (devices.copies_out)."""
    key = assignment.key
    username = assignment.user.get_username()
    # Locked before the delete reads the assignment's devices: one being made at this moment
    # (gateways.devices.create_device locks the same row) is in first, and loses its assignment with the rest.
    # Gone already: another request removed it at the same moment (a double click), done and recorded once.
    locked = Assignment.objects.select_for_update().filter(pk=assignment.pk).first()
    if locked is None:
        return
    locked.key = key  # its last download as locked, against the key as the caller read it
    copy = static_copy(locked)
    assignment.delete()
    record_key_event(
        Action.ASSIGNMENT_REMOVED,
        key,
        actor=actor,
        request=request,
        details={"user": username, "label": key.label, **({"static_copies": [copy]} if copy else {})},
    )


def _jsonable(value):
    if isinstance(value, datetime):
        return iso_time(value)
    return value


class ConfigUnavailable(RuleError):
    """The assignment's key cannot produce a config (revoked, disabled, expired)."""


KEY_STATE_ADVICE = {
    "revoked": "This key was revoked, so it yields no configuration. Ask your team admin for a new key.",
    "disabled": "This key is disabled by your team admin, so it yields no configuration for now.",
    "expired": "This key has expired, so it yields no configuration. Ask your team admin to renew it.",
}


def state_advice(assignment: Assignment) -> str:
    """Why the assignment's key yields no configuration, and what to do: for a revoked key whose holder has
    another usable key of the team (Assignment.replaced_by), that key, in the words of My set-up's notice."""
    key = assignment.key
    replacement = assignment.replaced_by() if key.revoked_at else None
    if replacement is None:
        return KEY_STATE_ADVICE[key.state]
    return f"This key was revoked, so it yields no configuration. {replacement_advice(replacement)}"


@sensitive_variables("secret")
def usable_config(*, assignment: Assignment, format_name: str, request: HttpRequest | None = None):
    """The assignee's ClaudeConfig; a revoked, disabled or expired key raises ConfigUnavailable (audited)."""
    from gateways.config.builder import build_config

    key = assignment.key
    if not key.is_usable:
        with transaction.atomic():
            record_key_event(
                Action.CONFIG_REFUSED,
                key,
                request=request,
                details={"assignment": assignment.pk, "format": format_name, "state": key.state},
            )
        raise ConfigUnavailable(state_advice(assignment))
    secret = key.reveal_secret()
    return build_config(key.gateway, key, secret)


def masked_config(*, assignment: Assignment):
    """The assignee's ClaudeConfig with the key's masked form in place of the secret: for showing, not a fetch.

    Raises ConfigUnavailable for a key that yields no configuration, or UnrepresentableValue (nothing is audited:
    looking at the page is not asking for the key).
    """
    from gateways.config.builder import build_config

    key = assignment.key
    if not key.is_usable:
        raise ConfigUnavailable(state_advice(assignment))
    # ASCII dots: every shell's quoting (CMD refuses non-ASCII) carries the placeholder as it is.
    return build_config(key.gateway, key, Secret(key.masked.replace("…", "...")))


def record_config_fetch(*, assignment: Assignment, format_name: str, request: HttpRequest | None = None) -> None:
    """A config left the portal: every fetch in the audit trail, then the assignment's stamp (connections).

    The stamp is written at most once a minute (portal.stamps), outside the audit transaction, so
    repeated downloads by one developer neither queue on their assignment's row nor hold it while
    the event is chained. download_count therefore counts the minutes with a download. The stamp names the
    secret the download carried: a rotation undone leaves the holder's copy the present one.
    """
    record_key_event(
        Action.CONFIG_DOWNLOADED,
        assignment.key,
        request=request,
        details={"assignment": assignment.pk, "format": format_name, "user": assignment.user.get_username()},
    )
    fingerprint = assignment.key.fingerprint
    stamps.touch(
        assignment,
        "last_download_at",
        since=assignment.key.config_changed_at,  # a download after a change is never folded into one before it
        # Nor one carrying another secret than the stamp names (a row from before the column, or its first minute).
        every=stamps.STAMP_INTERVAL if assignment.last_download_fingerprint == fingerprint else timedelta(0),
        last_download_fingerprint=fingerprint,
        last_download_format=format_name,
        last_download_ip=audit.client_ip(request),
        increments=("download_count",),
    )


@sensitive_variables("config", "text")
def deliver_config(*, assignment: Assignment, format_name: str, request: HttpRequest | None = None):
    """Render the assignee's config as one download format and record the fetch; returns (text, Format).

    Raises UnknownFormat, ConfigUnavailable, or UnrepresentableValue (nothing is recorded as fetched then).
    """
    from gateways.config import formats

    if format_name not in formats.FORMATS:
        raise formats.UnknownFormat(format_name)
    config = usable_config(assignment=assignment, format_name=format_name, request=request)
    text, fmt = formats.render(format_name, config)
    record_config_fetch(assignment=assignment, format_name=format_name, request=request)
    return text, fmt
