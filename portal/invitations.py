"""Invitations by e-mail, and the accounts they (or a first SSO sign-in) create; each change audited in its transaction."""

from __future__ import annotations

import contextlib
import logging
import re
import unicodedata
from collections.abc import Iterable
from datetime import timedelta

import idna
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from portal import audit, mail, renames
from portal.errors import AlreadyGone, RuleError
from portal.http import public_url
from portal.models import (
    Action,
    AuditEvent,
    ExternalIdentity,
    Invitation,
    Membership,
    PendingAuditEvent,
    Role,
    Team,
    UnconfirmedEmail,
)
from portal.names import DOTS_ONLY_USERNAME, is_only_dots
from portal.signals import member_added
from portal.times import iso_time

logger = logging.getLogger(__name__)

# The invitation a browser opened, kept in its session so the token leaves the address bar (like Django's reset).
INVITATION_SESSION_KEY = "invitation_token"


def accept_url(request: HttpRequest, raw: str) -> str:
    """The link an invitee opens: absolute, with the token in it (shown once, never stored)."""
    return public_url(request, reverse("invitation-open", args=[raw]))


def normalize_email(email: str) -> str:
    """The address in one spelling: its domain lowercase and in ASCII (bücher.de as xn--bcher-kva.de)."""
    email = email.strip()
    try:
        validate_email(email)
    except ValidationError:
        raise RuleError(f"{email[:200]!r} is not an e-mail address.", field="email") from None
    local, _, domain = email.rpartition("@")
    try:
        return f"{local}@{ascii_domain(domain)}"
    except idna.IDNAError:
        raise RuleError(
            f"{email[:200]!r} is not an e-mail address: its domain {domain[:100]!r} holds characters a domain name "
            "cannot hold (such as symbols or emoji). Check the address.",
            field="email",
        ) from None


def ascii_domain(domain: str) -> str:
    """The domain lowercase, each internationalised label in its xn-- form; idna.IDNAError if it is not valid IDNA.

    A plain ASCII label is kept as it is (only lowercased): Django's validator has accepted it, and IDNA 2008
    would refuse some that mail has always carried (`ab--cd`).
    """
    if domain.startswith("["):  # an address literal, [192.0.2.1]
        return domain.lower()
    mapped = idna.uts46_remap(domain, std3_rules=False, transitional=False)  # case, fullwidth letters and dots
    labels = mapped.split(".")
    return ".".join(idna.alabel(label).decode("ascii") if _international(label) else label for label in labels)


def _international(label: str) -> bool:
    return not label.isascii() or label.startswith("xn--")


def email_spellings(email: str) -> set[str]:
    """The ways an address may be stored: as typed, in its ASCII form and with its domain in Unicode.

    Accounts and invitations made before addresses had one spelling may hold either form.
    """
    email = email.strip()
    try:
        ascii_form = normalize_email(email)
    except RuleError:
        return {email}
    local, _, domain = ascii_form.rpartition("@")
    spellings = {email, ascii_form}
    labels = domain.split(".")
    if any(_international(label) for label in labels):
        with contextlib.suppress(idna.IDNAError):  # an xn-- label was checked by ascii_domain; this is belt and braces
            spellings.add(
                f"{local}@{'.'.join(idna.ulabel(label) if _international(label) else label for label in labels)}"
            )
    return spellings


def same_address(field: str, email: str) -> Q:
    """Rows whose `field` holds `email` in any spelling, case aside (see email_spellings)."""
    condition = Q()
    for spelling in email_spellings(email):
        condition |= Q(**{f"{field}__iexact": spelling})
    return condition


def known_addresses(user) -> list[str]:
    """Every address the account is known by: its own, and those its identity provider gave for it (SSO)."""
    linked = ExternalIdentity.objects.filter(user=user).exclude(email="").values_list("email", flat=True)
    return [address for address in [user.email, *linked] if address]


@transaction.atomic
def create_invitation(
    *, team: Team, email: str, role: str, actor, request: HttpRequest | None = None
) -> tuple[Invitation, str]:
    """Invite an address to the team with a role; returns the invitation and its link token (shown once)."""
    if role not in Role.values:
        raise RuleError(f"{role!r} is not a role. Use one of: {', '.join(Role.values)}.", field="role")
    email = normalize_email(email)
    # The address the identity provider gives a member is theirs too, even before the account took it over.
    known = same_address("user__email", email) | same_address("user__external_identities__email", email)
    if Membership.objects.filter(known, team=team, user__is_active=True).exists():
        raise RuleError(f"{email} already belongs to a member of {team.name}.", field="email")
    Team.objects.select_for_update().filter(pk=team.pk).first()  # one pending invitation per address, even in a race
    if pending := Invitation.objects.usable().filter(same_address("email", email), team=team).first():
        raise RuleError(
            f"{email} already has a pending invitation to {team.name} (id {pending.pk}). Withdraw it first to send "
            "a new link.",
            field="email",
        )
    # One whose maker is no longer an admin has lapsed: the new link replaces it for good, so it cannot come
    # back to life (a second link to the same team) should its maker be made admin again.
    withdraw_for_address(
        team=team,
        emails=[email],
        actor=actor,
        request=request,
        reason="replaced by a new invitation; this one had lapsed (its maker is no longer an admin of the team)",
    )
    expires_at = timezone.now() + timedelta(days=settings.INVITATION_DAYS)
    invitation, raw = Invitation.issue(team=team, email=email, role=role, created_by=actor, expires_at=expires_at)
    audit.record(
        Action.INVITATION_CREATED,
        actor=actor,
        request=request,
        team=team,
        target=email,
        details={"role": role, "invitation": invitation.pk, "expires_at": iso_time(expires_at)},
    )
    return invitation, raw


def send_invitation(invitation: Invitation, accept_url: str) -> bool:
    """E-mail the link when mail is configured; True when it went out. A failing server is logged, not fatal."""
    inviter = invitation.created_by.get_username() if invitation.created_by else "An admin"
    sent = mail.send(
        to=invitation.email,
        subject=f"You are invited to {invitation.team.name} on the gateway portal",
        template="portal/mail/invitation.txt",
        context={"invitation": invitation, "inviter": inviter, "accept_url": accept_url},
    )
    return sent and settings.EMAIL_CONFIGURED


@transaction.atomic
def withdraw_invitation(*, invitation: Invitation, actor, request: HttpRequest | None = None) -> None:
    """Stop a pending invitation's link; a second withdrawal (a double click, a retry) is refused, not recorded again."""
    # Conditional, inside the transaction: `invitation` was read before it, and another request may have withdrawn
    # (or someone accepted) it since.
    if not withdraw_one(invitation, actor=actor, request=request):
        invitation.refresh_from_db()
        refusal = f"This invitation is {invitation.state} already; there is nothing to withdraw."
        # Withdrawn: what was asked is done (the API's 404, as for a retried DELETE of anything gone); accepted or
        # run out: it cannot be withdrawn (a 400).
        raise AlreadyGone(refusal) if invitation.state == "withdrawn" else RuleError(refusal)


def withdraw_for_address(
    *,
    team: Team | None,
    emails: Iterable[str],
    actor,
    reason: str,
    request: HttpRequest | None = None,
    details: dict | None = None,
) -> list[Invitation]:
    """Withdraw the team's pending invitations for these addresses (lapsed ones too), one audit row each;
    with `team` None, those of every team.

    Called whenever a membership is made (by hand, by invitation, by SSO groups) or ends, and when an account is
    offboarded: a member needs no invitation, and one left standing would bring them back, perhaps as admin,
    after they left (or hand their place to whoever holds the address next).
    """
    addresses = Q()
    for email in {e.strip() for e in emails if e and e.strip()}:
        addresses |= same_address("email", email)
    if not addresses:
        return []
    pending = Invitation.objects.pending().filter(addresses).select_related("team").order_by("pk")
    if team is not None:
        pending = pending.filter(team=team)
    return [
        invitation
        for invitation in pending
        if withdraw_one(invitation, actor=actor, request=request, reason=reason, details=details)
    ]


def withdraw_one(
    invitation: Invitation,
    *,
    actor,
    reason: str = "",
    request: HttpRequest | None = None,
    details: dict | None = None,
) -> bool:
    """Withdraw a pending invitation, audited (with the reason, when the portal rather than an admin withdraws it);
    False when it was no longer pending."""
    # Conditionally: a link used at this moment is accepted, not also withdrawn.
    if Invitation.objects.pending().filter(pk=invitation.pk).update(withdrawn_at=timezone.now()) != 1:
        return False
    audit.record(
        Action.INVITATION_WITHDRAWN,
        actor=actor,
        request=request,
        team=invitation.team,
        target=invitation.email,
        details={"invitation": invitation.pk, **({"reason": reason} if reason else {}), **(details or {})},
    )
    return True


# The audit rows of a membership's end: a removal (by hand, by the groups claim, an account's offboarding) and a
# team's offboarding of its member.
LEFT_TEAM = (Action.MEMBER_REMOVED, Action.MEMBER_OFFBOARDED)


def left_since_invited(invitation: Invitation, user) -> str | None:
    """Why the invitation does not bring `user` into its team, as a sentence, when they left that team after it was
    made; None when they did not.

    Leaving withdraws the team's invitations for every address the account is known by, but an invitation may be
    for an address the portal learnt was theirs only later (the provider gives them a new one). Memberships keep no
    history, so the audit trail says who left when: each way out of a team writes one of LEFT_TEAM naming the team
    and the account by the user name it had then (see portal.renames.names_held: a rename since does not lose the
    row, and a name another account had before this one does not lend its rows).
    """
    since = max(invitation.created_at, user.date_joined)
    named = Q(pk__in=[])
    for name, start, until in renames.names_held(user):
        if until is not None and until < since:
            continue
        window = Q(target=name, created_at__gte=max(start, since))
        named |= window & Q(created_at__lte=until) if until is not None else window
    left = Q(action__in=LEFT_TEAM, team_id=invitation.team_id) & named
    if not (
        AuditEvent.objects.filter(left).exists() or PendingAuditEvent.objects.filter(left, rejected=False).exists()
    ):
        return None
    return (
        f"This invitation to {invitation.team.name} was sent before you left the team, so it does not bring you "
        "back. Ask one of the team's admins to invite you again."
    )


def claim(invitation: Invitation, user) -> bool:
    """Mark the invitation used by `user`, once: False if another request used, withdrew, outlived or lapsed it first."""
    claimed = Invitation.objects.usable().filter(pk=invitation.pk).update(accepted_at=timezone.now(), accepted_by=user)
    return claimed == 1


@transaction.atomic
def accept_invitation(*, invitation: Invitation, user, request: HttpRequest | None = None) -> Membership:
    """Make `user` a member of the invitation's team with its role, and use the invitation up."""
    if refusal := invitation.refusal():  # its maker may have lost admin since the page was opened
        raise RuleError(refusal)
    if left := left_since_invited(invitation, user):  # an old link does not bring a removed member back either
        raise RuleError(left)
    if not claim(invitation, user):
        invitation.refresh_from_db()
        raise RuleError(invitation.refusal() or "This invitation cannot be used any more.")
    membership, created = Membership.objects.get_or_create(
        team=invitation.team, user=user, defaults={"role": invitation.role}
    )
    if not created and membership.role != invitation.role and invitation.role == Role.ADMIN:
        membership.role = Role.ADMIN  # an invitation only ever raises a role: it never takes admin away
        membership.save(update_fields=["role"])
    audit.record(
        Action.INVITATION_ACCEPTED,
        actor=user,
        request=request,
        team=invitation.team,
        target=user.get_username(),
        details={"invitation": invitation.pk, "email": invitation.email, "role": membership.role},
    )
    withdraw_for_address(
        team=invitation.team,
        emails=[*known_addresses(user), invitation.email],
        actor=user,
        request=request,
        reason=f"{user.get_username()} joined the team with another invitation",
    )
    if created:
        member_added.send(sender=Membership, membership=membership, actor=invitation.created_by)
    return membership


# What case folding makes of other letters (ß to ss, İ to i and a combining dot, ǰ to j and a caron...), once
# names are in NFKC as Django stores them: where a name's folded form holds one, another name may have a
# different letter, so the database is asked for anything there (see username_taken).
FOLDED_FROM_OTHERS = frozenset("hijstwy\u0300\u0301\u0307\u0308\u030a\u030c\u0313\u0331\u0342")


def username_taken(username: str) -> bool:
    """True when an account's user name is this one but for case, in any script (ZOË and zoë, STRASSE and straße).

    The database's own case-insensitive match folds ASCII only on SQLite, so it is asked for the few names that
    could fold alike (a regular expression keeps the letters no other letter folds into), and Python compares
    their case folds.
    """
    folded = get_user_model().normalize_username(username).casefold()
    pattern = ""
    for ch in folded:
        caseless = ch.isascii() or ch.upper() == ch.lower() == ch
        if caseless and ch not in FOLDED_FROM_OTHERS:
            pattern += re.escape(ch)
        elif not pattern.endswith(".*"):
            pattern += ".*"
    candidates = get_user_model().objects.filter(username__iregex=f"^{pattern}$").values_list("username", flat=True)
    return any(unicodedata.normalize("NFKC", name).casefold() == folded for name in candidates)


def unique_username(wanted: str) -> str:
    """A free user name close to `wanted` (letters, digits and @.+-_ only): alice, alice2, alice3..."""
    base = re.sub(r"[^\w.@+-]", "", get_user_model().normalize_username(wanted))[:140]
    if not base or is_only_dots(base):
        base = "user"
    name, n = base, 1
    while username_taken(name):
        n += 1
        name = f"{base}{n}"
    return name


@transaction.atomic
def create_account(
    *,
    username: str,
    email: str,
    password: str | None,
    via: str,
    request: HttpRequest | None = None,
    email_confirmed: bool = True,
):
    """A new active account; without a password it can only sign in with SSO.

    `email_confirmed=False` when nobody has shown the address to be theirs (the invited address, taken by
    whoever holds the link): SSO then does not enter the account by it until it is confirmed (UnconfirmedEmail).
    """
    User = get_user_model()
    if is_only_dots(username):
        raise RuleError(DOTS_ONLY_USERNAME, field="username")
    if username_taken(username):
        raise RuleError(f"The user name {username!r} is taken. Choose another.", field="username")
    if email and User.objects.filter(same_address("email", email)).exists():
        # A second account would make the address match two at the first SSO sign-in, which refuses both.
        raise RuleError(
            f"An account with the address {email} exists already. Sign in with it, then open the invitation "
            "again to join with that account (staff can send a password reset link if it is forgotten)."
        )
    try:
        with transaction.atomic():
            user = User.objects.create_user(username, email=email, password=password)
    except IntegrityError:
        raise RuleError(f"The user name {username!r} was taken a moment ago. Choose another.") from None
    if email and not email_confirmed:
        UnconfirmedEmail.objects.create(user=user, email=email)
    audit.record(Action.ACCOUNT_CREATED, actor=user, request=request, target=username, details={"via": via})
    return user
