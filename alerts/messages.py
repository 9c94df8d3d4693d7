"""What each event says, and the bodies each kind of channel receives. No database writes, no network.

A message names a key by label, masked form and fingerprint, never by its secret; a channel's
signing secret only ever goes into the signature header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from django.urls import reverse

from alerts.models import EventKind, Notification
from gateways.devices import developers_holding
from gateways.models import Assignment, GatewayKey, Replacement, Verdict, revoked_notice
from portal.http import public_url
from portal.times import in_portal_zone, written_time

EMAIL_PREFIX = "[Gateway portal] "


@dataclass(frozen=True)
class Message:
    event: str
    subject: str
    text: str
    url: str = ""
    payload: dict = field(default_factory=dict)


def link(path: str) -> str:
    """An address to act at: absolute when PORTAL_URL is set (it should be, for mail), else the path."""
    return public_url(None, path)  # no request: a notification is sent by `manage.py notify`


def key_facts(key: GatewayKey) -> dict:
    return {
        "id": str(key.id),
        "label": key.label,
        "masked": key.masked,
        "fingerprint": key.short_fingerprint,
        "gateway": key.gateway.slug,
        "state": key.state,
    }


def _named(key: GatewayKey) -> str:
    return f"{key.label} ({key.masked}, fingerprint {key.short_fingerprint})"


def _verdict_label(verdict: str) -> str:
    return dict(Verdict.choices).get(verdict, verdict)


def key_failing(key: GatewayKey, *, verdict: str, hint: str) -> Message:
    return Message(
        EventKind.KEY_FAILING,
        f"{key.label} started failing on {key.gateway.name}: {_verdict_label(verdict)}",
        f"The key {_named(key)} of team {key.team.name} failed its probe against {key.gateway.name}: "
        f"{_verdict_label(verdict)}. {hint}".strip(),
        link(reverse("key", args=[key.id])),
        {"key": key_facts(key), "verdict": verdict},
    )


def key_recovered(key: GatewayKey, *, previous: str) -> Message:
    return Message(
        EventKind.KEY_RECOVERED,
        f"{key.label} works again on {key.gateway.name}",
        f"The key {_named(key)} of team {key.team.name} passed its probe against {key.gateway.name} again, "
        f"after failing with {_verdict_label(previous)}.",
        link(reverse("key", args=[key.id])),
        {"key": key_facts(key), "verdict": "ok", "previous_verdict": previous},
    )


def _expiry(key: GatewayKey) -> datetime:
    """The key's expiry in the portal's zone (TIME_ZONE), whoever's request made the message."""
    if key.expires_at is None:
        raise ValueError(f"The key {key.label} has no expiry to tell of.")
    return in_portal_zone(key.expires_at)


def key_expiring(key: GatewayKey) -> Message:
    return Message(
        EventKind.KEY_EXPIRING,
        f"{key.label} expires on {_expiry(key):%Y-%m-%d}",
        f"The key {_named(key)} of team {key.team.name} for {key.gateway.name} expires on "
        f"{written_time(_expiry(key))}; its holders' set-ups stop working then. Renew it on the key "
        "page: set a later expiry, or rotate in a new secret with its new expiry.",
        link(reverse("key", args=[key.id])),
        {"key": key_facts(key), "expires_at": _iso(key.expires_at)},
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def key_expired(key: GatewayKey) -> Message:
    return Message(
        EventKind.KEY_EXPIRED,
        f"{key.label} has expired",
        f"The key {_named(key)} of team {key.team.name} for {key.gateway.name} expired on "
        f"{written_time(_expiry(key))}: it yields no set-up any more. Renew it on the key page.",
        link(reverse("key", args=[key.id])),
        {"key": key_facts(key), "expires_at": _iso(key.expires_at)},
    )


def key_rotated(
    key: GatewayKey, *, actor_name: str, holders: int, live_holders: int = 0, never_downloaded: int = 0
) -> Message:
    """`holders` were told to download again; `live_holders` only use live devices, and `never_downloaded`
    holders have no set-up at all: neither holds the old secret, so neither is mailed."""
    live = (
        f" {live_holders} holder(s) use only live devices, which fetch the new secret themselves."
        if live_holders
        else ""
    )
    never = (
        f" {never_downloaded} holder(s) never downloaded a set-up, so hold no old secret and were not mailed."
        if never_downloaded
        else ""
    )
    return Message(
        EventKind.KEY_ROTATED,
        f"{key.label} was rotated",
        f"{actor_name or 'The portal'} rotated the key {key.label} of team {key.team.name} for {key.gateway.name}; "
        f"it is now {key.masked}. {holders} holder(s) were told to download their set-up again; the "
        f"dashboard shows whose download is still older than the rotation.{live}{never}",
        link(reverse("key", args=[key.id])),
        {"key": key_facts(key), "holders": holders, "live_holders": live_holders, "never_downloaded": never_downloaded},
    )


def holder_rotation_advice(assignment: Assignment) -> str | None:
    """What a holder must do after a rotation, or None when nothing.

    Only a downloaded set-up holds the secret itself, so only its holder must download again. A live
    device fetches the secret when Claude Code asks, and a holder who never downloaded holds no secret.
    """
    if assignment.last_download_at is None:
        return None
    return (
        "The set-up you downloaded holds the old secret, which stops working once the old secret is revoked "
        "at the gateway. Download your set-up again from My set-up"
    )


def rotated_for_holder(assignment: Assignment, *, advice: str) -> Message:
    key = assignment.key
    return Message(
        EventKind.KEY_ROTATED,
        f"Download your {key.gateway.name} set-up again: key {key.label} was rotated",
        f"The key {key.label} of team {key.team.name} for {key.gateway.name}, which you use, was given a new "
        f"secret (now {key.masked}). {advice}.",
        link(f"{reverse('setup')}#assignment-{assignment.id}"),
        {"key": key_facts(key), "assignment": assignment.id},
    )


def key_revoked(
    key: GatewayKey,
    *,
    actor_name: str,
    holders: int,
    without_address: int,
    unreplaced: int,
    static_copies: int,
    actor_held: bool = False,
) -> Message:
    """`holders` were mailed (`without_address` more could not be; the actor, when `actor_held`, was not: they did
    it); `unreplaced` holders, the actor among them, hold no other key of the team they can use now
    (gateways.models.replacements: none, or only revoked, disabled or expired ones, or ones the gateway refuses);
    `static_copies` is devices.copies_out: what the gateway still accepts until the key is dropped there."""
    gateway = key.gateway.name
    no_address = (
        f" {without_address} holder(s) have no e-mail address: My set-up tells them." if without_address else ""
    )
    actor_said = f" {actor_name}, who revoked it, held it too and was not mailed." if actor_held else ""
    # Not "no other key": a holder whose other key is disabled, expired or refused gets back by that key's repair.
    unreplaced_said = (
        f" {unreplaced} holder(s) hold no other key of the team they can use now (none, or only ones revoked, "
        "disabled, expired or refused by the gateway): the way back is a new key stored and assigned to them, or "
        "one of theirs enabled, renewed or fixed at the gateway."
        if unreplaced
        else ""
    )
    # The portal destroys its own copy only (as the revoke confirmation says): a downloaded or shown one still works.
    copies = (
        f" {developers_holding(static_copies)} a static copy (downloaded or shown) that {gateway} still accepts "
        f"until the key is deleted or disabled there: delete or disable the key in the {gateway} console."
        if static_copies
        else ""
    )
    return Message(
        EventKind.KEY_REVOKED,
        f"{key.label} was revoked",
        f"{actor_name or 'The portal'} revoked the key {_named(key)} of team {key.team.name} for {gateway}: its "
        f"secret is destroyed and it yields no set-up any more. {holders} holder(s) were told by mail."
        f"{no_address}{actor_said}{unreplaced_said}{copies}",
        link(reverse("key", args=[key.id])),
        {
            "key": key_facts(key),
            "holders": holders,
            "without_address": without_address,
            "unreplaced": unreplaced,
            "static_copies": static_copies,
        },
    )


def revoked_for_holder(assignment: Assignment, *, replacement: Replacement | None) -> Message:
    key = assignment.key
    if replacement is None:
        subject = f"Ask for a new key: your {key.gateway.name} key {key.label} was revoked"
    elif replacement.elsewhere is None:
        subject = f"Use the key {replacement.label}: your {key.gateway.name} key {key.label} was revoked"
    else:
        subject = f"Your {key.gateway.name} key {key.label} was revoked"
    return Message(
        EventKind.KEY_REVOKED,
        subject,
        f"{revoked_notice(key, replacement)} (Team {key.team.name}, gateway {key.gateway.name}; My set-up says "
        "the same.)",
        link(f"{reverse('setup')}#assignment-{assignment.id}"),
        {
            "key": key_facts(key),
            "assignment": assignment.id,
            "replacement": None
            if replacement is None
            else {"label": replacement.label, "elsewhere": replacement.elsewhere},
        },
    )


def member_added(*, team_name: str, team_slug: str, username: str, role: str, actor_name: str) -> Message:
    return Message(
        EventKind.MEMBER_ADDED,
        f"{username} joined {team_name}",
        f"{actor_name or 'The portal'} added {username} to team {team_name} as {role}.",
        link(reverse("team", args=[team_slug])),
        {"member": {"username": username, "role": role}},
    )


def member_offboarded(*, team_name: str, team_slug: str, username: str, role: str, actor_name: str) -> Message:
    return Message(
        EventKind.MEMBER_OFFBOARDED,
        f"{username} left {team_name}",
        f"{actor_name or 'The portal'} removed {username} ({role}) from team {team_name}; the keys they held "
        "there were taken back. If they may have kept a copy, rotate those keys' secrets.",
        link(reverse("team", args=[team_slug])),
        {"member": {"username": username, "role": role}},
    )


def key_self_assigned(assignment: Assignment, *, subject: str, text: str) -> Message:
    """The notice gateways wrote (gateways.notices), for the team's other admins; it carries its team page link."""
    return Message(EventKind.KEY_SELF_ASSIGNED, subject, text, "", {"key": key_facts(assignment.key)})


def channel_test(*, team_name: str, actor_name: str) -> Message:
    return Message(
        EventKind.TEST,
        f"Test message for {team_name}",
        f"{actor_name} sent this to check the channel: notifications of team {team_name} arrive here.",
    )


# --- The bodies a channel receives --------------------------------------------------------------


def webhook_body(notification: Notification, *, delivery_id: int) -> bytes:
    """The generic webhook's JSON body: the event, its sentence and its facts; the same bytes on every attempt."""
    document = {
        "delivery": delivery_id,
        "notification": notification.id,
        "event": notification.event,
        "created_at": notification.created_at.isoformat(),
        "team": notification.team.slug,
        "subject": notification.subject,
        "text": notification.text,
        "url": notification.url,
        **notification.payload,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def slack_escaped(text: str) -> str:
    """Slack's mrkdwn reads <...> as a link or mention and & as an entity: those three go as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(notification: Notification) -> bytes:
    """A Slack-compatible incoming-webhook body (also read by Mattermost, Rocket.Chat, Teams' Slack connector)."""
    text = f"*{slack_escaped(notification.subject)}*\n{slack_escaped(notification.text)}"
    if notification.url:
        text += f"\n<{notification.url}|Open in the portal>"
    return json.dumps({"text": text}).encode()


def email_parts(notification: Notification, *, to_person: bool) -> tuple[str, str]:
    """Subject and plain-text body of the mail."""
    if not to_person:
        why = f"You receive this because this address is a notification channel of team {notification.team.name}."
    elif notification.event == EventKind.KEY_SELF_ASSIGNED:
        why = f"You receive this because you oversee team {notification.team.name} in the portal."
    else:
        why = "You receive this because you hold this key."
    body = notification.text + (f"\n\n{notification.url}" if notification.url else "") + f"\n\n-- \n{why}\n"
    return EMAIL_PREFIX + notification.subject, body
