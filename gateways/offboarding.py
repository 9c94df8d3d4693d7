"""Offboarding: take back in one step what a person held, and name the keys they may still have a copy of.

A team admin offboards a member from their team: the membership and the member's assignments of that team's
keys go, and so do the member's access tokens when no team is left to them. Staff offboard an account: it is
deactivated (its sessions end), and every membership, assignment and access token goes, and so does every
pending invitation to any of its addresses, in any team. Either way one audit event lists the consequences. A
key whose config the person downloaded still sits on their machine as a static copy: the result lists those
keys with a "rotate now" link each, as only rotating makes the copy useless.

It lives in gateways because it reads both apps' data; gateways may build on portal, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from gateways.models import Assignment
from gateways.services import record_assignments_removed, static_copy
from portal import audit
from portal.errors import RuleError
from portal.invitations import known_addresses, withdraw_for_address
from portal.models import AccessToken, Action, Membership, Role, Team
from portal.services import end_membership, refuse_last_admin


@dataclass
class Offboarding:
    """What offboarding `user` (from `team`, or from the portal when team is None) takes away."""

    user: User
    team: Team | None
    memberships: list[Membership] = field(default_factory=list)
    assignments: list[Assignment] = field(default_factory=list)
    tokens: list[AccessToken] = field(default_factory=list)
    keeps_tokens: bool = False  # team offboarding of someone still in another team (or staff): tokens are the account's
    # Account offboarding only (a team's own offboarding refuses its last admin): the teams whose last admin
    # this person is. Staff act as admin in every team, so they go on; the page asks them to name a new one.
    leaderless: list[Team] = field(default_factory=list)

    @property
    def deactivates(self) -> bool:
        return self.team is None

    @property
    def static_copies(self) -> list[Assignment]:
        """Assignments whose config holds the present secret (downloaded or shown) of a key still alive
        (services.static_copy): that secret is out until the key is rotated."""
        return [a for a in self.assignments if static_copy(a) is not None]

    def assignments_removed(self, team: Team | None = None) -> list[str]:
        """The assignments taken back (of `team`'s keys only, when given), as team/fingerprint."""
        return [
            f"{a.key.team.slug}/{a.key.short_fingerprint}"
            for a in self.assignments
            if team is None or a.key.team_id == team.pk
        ]

    def static_copies_of(self, team: Team) -> list[dict]:
        """The static copies of `team`'s keys, as a member's removal from that team lists them in its trail."""
        return [copy for a in self.assignments if a.key.team_id == team.pk and (copy := static_copy(a))]

    def consequences(self) -> dict:
        """The audit event's details: everything that was taken back, and the keys to rotate."""
        return {
            "deactivated": self.deactivates,
            "teams_left": [m.team.slug for m in self.memberships],
            "assignments_removed": self.assignments_removed(),
            "tokens_revoked": [t.lookup_id for t in self.tokens],
            "teams_without_admin": [t.slug for t in self.leaderless],
            "static_copies": [
                {
                    "id": str(a.key.pk),  # as static_copy() names the key: its fingerprint changes with a rotation
                    "team": a.key.team.slug,
                    "key": a.key.short_fingerprint,
                    "label": a.key.label,
                    "masked": a.key.masked,
                }
                for a in self.static_copies
            ],
        }


def _assignments(*, locked: bool = False, **filters) -> list[Assignment]:
    """The assignments to take back; `locked` under offboard's transaction, so that one an admin unassigns at
    this moment is taken back, and recorded, by one of the two only."""
    assignments = Assignment.objects.filter(**filters).select_related("key", "key__team", "key__gateway")
    return list(assignments.select_for_update(of=("self",)) if locked else assignments)


def _live_tokens(user) -> list[AccessToken]:
    now = timezone.now()
    tokens = AccessToken.objects.filter(user=user, revoked_at__isnull=True)
    return [t for t in tokens if t.expires_at is None or t.expires_at > now]


def for_member(team: Team, user) -> Offboarding:
    """Offboarding from one team: its membership and assignments; the tokens too if no other team is left."""
    memberships = list(Membership.objects.filter(team=team, user=user).select_related("team"))
    elsewhere = Membership.objects.filter(user=user).exclude(team=team).exists()
    keeps = elsewhere or user.is_staff
    tokens = [] if keeps else _live_tokens(user)
    return Offboarding(user, team, memberships, _assignments(key__team=team, user=user), tokens, keeps_tokens=keeps)


def _leaderless(memberships: list[Membership]) -> list[Team]:
    """The teams of these memberships (one person's) that have no other admin."""
    administered = [m.team_id for m in memberships if m.role == Role.ADMIN]
    if not administered:
        return []
    others = Membership.objects.filter(team_id__in=administered, role=Role.ADMIN).exclude(
        pk__in=[m.pk for m in memberships]
    )
    kept = set(others.values_list("team_id", flat=True))
    return [m.team for m in memberships if m.team_id in administered and m.team_id not in kept]


def for_account(user) -> Offboarding:
    """Offboarding from the portal: every membership, assignment and token, and the account deactivated."""
    memberships = list(Membership.objects.filter(user=user).select_related("team"))
    plan = Offboarding(user, None, memberships, _assignments(user=user), _live_tokens(user))
    plan.leaderless = _leaderless(memberships)
    return plan


@transaction.atomic
def offboard(plan: Offboarding, *, actor, request: HttpRequest | None = None) -> dict:
    """Carry out the plan; returns the consequences, which one audit event records.

    The memberships are locked first, as remove_member locks one, then read again with the assignments:
    what a removal or an assignment at the same moment changed is what is taken back and recorded. All of
    the person's memberships are locked, not only this team's, and whether the tokens go is decided again
    under that lock: of two teams offboarding the same person at once, the second waits for the first and
    then finds no team left to them, so the tokens go.
    """
    user = plan.user
    if user.pk == actor.pk:
        raise RuleError("You cannot offboard yourself. Ask another admin or staff member.")
    held = Membership.objects.filter(user=user).select_for_update(of=("self",)).select_related("team").order_by("pk")
    locked = list(held)
    plan.memberships = locked if plan.team is None else [m for m in locked if m.team_id == plan.team.pk]
    if plan.team is None:
        plan.assignments = _assignments(locked=True, user=user)
    else:
        plan.assignments = _assignments(locked=True, key__team=plan.team, user=user)
    if plan.team is not None:
        plan.keeps_tokens = user.is_staff or len(locked) > len(plan.memberships)
        for membership in plan.memberships:
            refuse_last_admin(membership, new_role=None)
    else:
        # Read again under the lock, and after the teams' rows, which every change of a team's admins locks
        # first (portal.services.refuse_last_admin): the teams this leaves without an admin, as they are now.
        list(Team.objects.select_for_update().filter(pk__in=[m.team_id for m in locked]).order_by("pk").values("pk"))
        plan.leaderless = _leaderless(locked)
    plan.tokens = [] if plan.keeps_tokens else _live_tokens(user)
    AccessToken.objects.filter(pk__in=[t.pk for t in plan.tokens]).update(revoked_at=timezone.now())
    Assignment.objects.filter(pk__in=[a.pk for a in plan.assignments]).delete()
    reason = "account offboarded" if plan.deactivates else "offboarded from the team"
    record_assignments_removed(plan.assignments, user=user, reason=reason, actor=actor, request=request)
    for membership in plan.memberships:
        # Every way out of a team goes through end_membership, so the team's channels hear of it;
        # its details (the assignments) are in this offboarding's one audit event already.
        end_membership(membership, actor=actor)
    if plan.deactivates:
        # Invitations to other teams, not yet accepted, were meant for the leaver: left standing, they would bring
        # whoever holds the address next (or the account itself, reactivated) into those teams.
        withdraw_for_address(
            team=None,
            emails=known_addresses(user),
            actor=actor,
            request=request,
            reason=f"{user.get_username()}'s account was offboarded",
            details={"via": Action.USER_OFFBOARDED.value},
        )
    if plan.deactivates and user.is_active:
        user.is_active = False
        user.save(update_fields=["is_active"])
    consequences = plan.consequences()
    if plan.deactivates:
        # The account's event belongs to no team, and each team's auditors read their own team's trail: each
        # team left hears of it there, with what it lost and the copies of its keys that left with the person.
        for membership in plan.memberships:
            team = membership.team
            details = {
                "via": Action.USER_OFFBOARDED.value,
                "role": membership.role,
                "assignments_removed": plan.assignments_removed(team),
                "left_without_admin": team in plan.leaderless,
            }
            # As a removal's row: the team's auditors (and copies_out) read who left with a working copy here.
            copies = plan.static_copies_of(team)
            if copies:
                details["static_copies"] = copies
            audit.record(
                Action.MEMBER_REMOVED,
                actor=actor,
                request=request,
                team=team,
                target=user.get_username(),
                details=details,
            )
    audit.record(
        Action.USER_OFFBOARDED if plan.deactivates else Action.MEMBER_OFFBOARDED,
        actor=actor,
        request=request,
        team=plan.team,
        target=user.get_username(),
        details=consequences,
    )
    return consequences
