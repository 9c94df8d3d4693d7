"""State changes for teams and members, each written with its audit event in one transaction."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.http import HttpRequest

from portal import audit
from portal.errors import AlreadyGone, RuleError, echoed
from portal.invitations import known_addresses, withdraw_for_address
from portal.models import AccessToken, Action, Membership, Role, Team, validate_lowercase_slug
from portal.names import clean_name
from portal.signals import member_added, member_leaving
from portal.times import iso_time


def find_user(username: str):
    User = get_user_model()
    # No user name holds a NUL, and PostgreSQL refuses one in a query: it names nobody.
    user = None if "\x00" in username else User.objects.filter(username=username).first()
    if user is not None and not user.is_active:
        raise RuleError(
            f"{username}'s account is deactivated, so it cannot be added to a team or given a key. If they are "
            "back, staff reactivate it first (Django admin, Users, Active).",
            field="username",
        )
    if user is None:
        raise RuleError(
            f"There is no active user called {username!r}. Invite them by e-mail instead (team page, Invitations).",
            field="username",
        )
    return user


def clean_team_name(name: str) -> str:
    """A team's name as pages, exports and mail subjects show it: one line of visible text (portal.names)."""
    max_length = Team._meta.get_field("name").max_length or 100
    return clean_name(name, what="team name", field="name", empty="The team needs a name.", max_length=max_length)


def clean_slug(slug: str) -> str:
    """A team's or gateway's slug, as validate_lowercase_slug wants it."""
    try:
        validate_lowercase_slug(slug)
    except ValidationError as exc:
        raise RuleError(exc.messages[0], field="slug") from None
    return slug


def refuse_taken_slug(model: type[models.Model], slug: str) -> None:
    """A RuleError when a team or gateway (`model`) has this slug already, in any case."""
    # Case-insensitive: a slug stored before slugs were lowercase still takes its lowercase form.
    taken = model._default_manager.filter(slug__iexact=slug).values_list("slug", flat=True).first()
    if taken is not None:
        noun = model._meta.verbose_name
        raise RuleError(f"A {noun} with the slug {taken!r} already exists. Choose another slug.", field="slug")


@transaction.atomic
def create_team(*, name: str, slug: str, actor, request: HttpRequest | None = None) -> Team:
    name = clean_team_name(name)
    slug = clean_slug(slug)
    refuse_taken_slug(Team, slug)
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name, slug=slug)
    except IntegrityError:  # the same slug created at the same moment: the constraint decides
        refuse_taken_slug(Team, slug)
        raise
    audit.record(Action.TEAM_CREATED, actor=actor, request=request, team=team, target=slug, details={"name": name})
    if actor is not None and actor.pk:
        # Whoever creates a team runs it first: its admin, until they hand it over.
        Membership.objects.create(team=team, user=actor, role=Role.ADMIN)
        audit.record(
            Action.MEMBER_ADDED,
            actor=actor,
            request=request,
            team=team,
            target=actor.get_username(),
            details={"role": Role.ADMIN, "reason": "created the team"},
        )
    return team


def add_member(*, team: Team, username: str, role: str, actor, request: HttpRequest | None = None) -> Membership:
    """Add a user to the team, or change their role if they are already in it."""
    return put_member(team=team, username=username, role=role, actor=actor, request=request)[0]


@transaction.atomic
def put_member(
    *, team: Team, username: str, role: str, actor, request: HttpRequest | None = None
) -> tuple[Membership, bool]:
    """add_member, and whether the membership is new (the API answers 201 then, 200 for a role set)."""
    if role not in Role.values:
        raise RuleError(f"{role!r} is not a role. Use one of: {', '.join(Role.values)}.", field="role")
    user = find_user(username)
    membership = Membership.objects.select_for_update().filter(team=team, user=user).first()
    created = False
    if membership is None:
        try:
            with transaction.atomic():
                membership = Membership.objects.create(team=team, user=user, role=role)
            created = True
        except IntegrityError:
            # Added at the same moment by another request (a retried POST, a double click): they are a member
            # now, so this one sets the role, as for anyone already in the team.
            membership = Membership.objects.select_for_update().filter(team=team, user=user).first()
            if membership is None:  # and removed again since: nothing to build on
                raise RuleError(
                    f"{username} was added to {team.slug} and removed at the same moment; try again."
                ) from None
    if created:
        audit.record(
            Action.MEMBER_ADDED, actor=actor, request=request, team=team, target=username, details={"role": role}
        )
        member_added.send(sender=Membership, membership=membership, actor=actor)
    elif membership.role != role:
        refuse_last_admin(membership, new_role=role)
        old = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit.record(
            Action.MEMBER_ROLE_CHANGED,
            actor=actor,
            request=request,
            team=team,
            target=username,
            details={"from": old, "to": role},
        )
    # The role chosen here is the one they hold: an invitation from before (the mail was slow) must not raise it
    # at their next sign-in, nor bring them back after they are removed.
    withdraw_for_address(
        team=team,
        emails=known_addresses(user),
        actor=actor,
        request=request,
        reason=f"{username} was added to the team by hand",
    )
    return membership, created


def end_membership(membership: Membership, *, actor, request: HttpRequest | None = None) -> dict[str, object]:
    """Delete a membership after the apps listening to member_leaving took back what they held.

    Returns what they took back, for the caller's audit row. Every way out of a team goes through here, and
    withdraws the team's pending invitations for every address the leaver is known by (their account's, and
    those the identity provider gave for them): none brings them back.
    """
    details: dict[str, object] = {}
    for _, answer in member_leaving.send(sender=Membership, membership=membership, actor=actor, request=request):
        if isinstance(answer, dict):  # a receiver answers with what it took back, for the audit row
            details.update(answer)
    user = membership.user
    withdraw_for_address(
        team=membership.team,
        emails=known_addresses(user),
        actor=actor,
        request=request,
        reason=f"{user.get_username()} left the team",
    )
    membership.delete()
    return details


def not_a_member(username: str, team: Team) -> str:
    """The sentence for removing someone who is not in the team: removed already (a retry), or never added."""
    return f"{echoed(username)} is not a member of {team.slug}: removed already, or never added."


@transaction.atomic
def remove_member(*, membership: Membership, actor, request: HttpRequest | None = None) -> dict[str, object]:
    """Remove a member; the apps listening to member_leaving take back what they held (their key assignments).

    Returns what they took back, as the audit row records it."""
    team, user = membership.team, membership.user
    # Locked first: a second removal at the same moment (a double submit, two admins) waits here and finds
    # the member gone, and a key being assigned to them (gateways.services.assign_key) is taken back too.
    current = Membership.objects.select_for_update().filter(pk=membership.pk).first()
    if current is None:
        raise AlreadyGone(not_a_member(user.get_username(), team))
    membership.role = current.role
    refuse_last_admin(membership, new_role=None)
    details = end_membership(membership, actor=actor, request=request)
    audit.record(
        Action.MEMBER_REMOVED,
        actor=actor,
        request=request,
        team=team,
        target=user.get_username(),
        details=details,
    )
    return details


def refuse_last_admin(membership: Membership, *, new_role: str | None) -> None:
    """A RuleError when this change (a new role, or None for leaving) would leave the team without an admin."""
    if membership.role != Role.ADMIN or new_role == Role.ADMIN:
        return
    # Every change of a team's admins locks its row first (portal.oidc too), after the membership's:
    # of two admins removing each other at once, the second waits and then sees the first gone.
    Team.objects.select_for_update().filter(pk=membership.team_id).first()
    admins = Membership.objects.filter(team=membership.team, role=Role.ADMIN).exclude(pk=membership.pk)
    if not admins.exists():
        raise RuleError("This is the team's last admin. Make someone else admin first.")


@transaction.atomic
def issue_token(
    *, user, name: str = "", expires_at=None, actor=None, request: HttpRequest | None = None, via: str = ""
):
    """Create a personal access token; returns (token, plaintext shown once).

    `via` names a command run on the server: the token is then its act (no actor), not the user's own.
    """
    from portal.models import AccessToken

    token, raw = AccessToken.issue(user, name=name, expires_at=expires_at)
    details = {
        "user": user.get_username(),
        "name": name,
        "expires_at": iso_time(token.expires_at) if token.expires_at else None,
    }
    audit.record(
        Action.TOKEN_ISSUED,
        actor=None if via else actor or user,
        request=request,
        target=token.lookup_id,
        details={**details, "via": via} if via else details,
    )
    return token, raw


@transaction.atomic
def revoke_token(*, token, actor, request: HttpRequest | None = None) -> None:
    """Revoke the token, once: a second revocation sent at the same moment (a double click, a retry), whose
    `token` was read before this one committed, changes and records nothing."""
    from django.utils import timezone

    now = timezone.now()
    if not AccessToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now):
        return
    token.revoked_at = now
    audit.record(
        Action.TOKEN_REVOKED,
        actor=actor,
        request=request,
        target=token.lookup_id,
        details={"user": token.user.get_username(), "name": token.name},
    )


TEAM_GROUP_FIELDS = ("sso_member_group", "sso_admin_group")


@transaction.atomic
def update_team_groups(*, team: Team, changes: dict, actor, request: HttpRequest | None = None) -> Team:
    """Name the identity-provider groups whose members join the team (blank: none); audited.

    Only the groups in `changes` change: the others keep what is saved now, read under the team's lock, so a
    form opened before another admin's save does not undo it.
    """
    team = Team.objects.select_for_update().get(pk=team.pk)
    values = {name: str(changes.get(name, getattr(team, name)) or "").strip() for name in TEAM_GROUP_FIELDS}
    for name, value in values.items():
        if len(value) > 200 or any(ord(c) < 32 for c in value):
            raise RuleError(f"{name} must be one line of at most 200 characters.", field=name)
    if values["sso_member_group"] and values["sso_member_group"] == values["sso_admin_group"]:
        raise RuleError("Name different groups for members and admins (or leave one blank).", field="sso_admin_group")
    before = {name: getattr(team, name) for name in TEAM_GROUP_FIELDS}
    if before == values:
        return team
    for name, value in values.items():
        setattr(team, name, value)
    team.save(update_fields=list(TEAM_GROUP_FIELDS))
    audit.record(
        Action.TEAM_UPDATED,
        actor=actor,
        request=request,
        team=team,
        target=team.slug,
        details={
            name: {"from": before[name], "to": values[name]}
            for name in TEAM_GROUP_FIELDS
            if before[name] != values[name]
        },
    )
    return team
