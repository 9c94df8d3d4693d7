"""Who is connected where: one row per developer x gateway x key, for the page, the API and CSV.

Every figure on a row is a column of the assignment or its key (the download and the latest
probe are written there when they happen), so the list costs the same few queries at any size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.functions import Coalesce, RowNumber
from django.http import StreamingHttpResponse
from django.utils import timezone

from gateways.models import (
    Assignment,
    Device,
    GatewayKey,
    downloaded_before_a_change,
    downloaded_earlier_secret,
    probe_counts,
    usable_key,
)
from portal import exports
from portal.errors import RuleError

STATES = {
    "never_downloaded": "Never downloaded",
    "stale": "Stale download",
    "failing": "Failing probe",
    "expired": "Expired key",
}
SORTS = {
    "user": "user__username",
    "team": "key__team__slug",
    "gateway": "key__gateway__slug",
    "assigned": "created_at",
    "last_download": "last_download_at",
    "verdict": "current_verdict",  # annotated by connections_for(): the verdict the row shows
    "expiry": "key__expires_at",
}
# The columns of a row, in the order of the CSV and the API.
COLUMNS = (
    "assignment",
    "user",
    "team",
    "gateway",
    "key_id",
    "key_label",
    "masked",
    "key_state",
    "assigned_since",
    "last_download_at",
    "last_download_format",
    "last_download_ip",
    "download_stale",
    "latest_verdict",
    "latest_probe_at",
    "expires_at",
    "live_devices",
    "live_devices_current",
    "last_live_fetch_at",
)


@dataclass(frozen=True)
class ConnectionFilters:
    team: str = ""
    gateway: str = ""
    user: str = ""
    state: str = ""
    sort: str = "-assigned"

    @classmethod
    def from_query(cls, query) -> ConnectionFilters:
        User = get_user_model()
        # As Django stores names (NFKC), as the audit trail's actor filter reads them.
        user = User.normalize_username(query.get("user", "").strip())
        longest = User._meta.get_field("username").max_length  # a longer name is nobody's
        if longest is not None and len(user) > longest:
            raise RuleError(
                f"user must be one person's user name (at most {longest} characters), not one of {len(user)}.",
                field="user",
            )
        state = query.get("state", "")
        if state and state not in STATES:
            raise RuleError(f"state must be one of {', '.join(STATES)}, not {state!r}.", field="state")
        sort = query.get("sort", "-assigned")
        if sort.removeprefix("-") not in SORTS:
            raise RuleError(
                f"sort must be one of {', '.join(SORTS)} (prefix - to reverse), not {sort!r}.", field="sort"
            )
        return cls(team=query.get("team", ""), gateway=query.get("gateway", ""), user=user, state=state, sort=sort)


def stale_cutoff():
    """A download older than this is stale even if nothing changed since."""
    return timezone.now() - timedelta(days=settings.CONNECTION_STALE_DAYS)


def never_downloaded(now: datetime) -> Q:
    """Assignments of a usable key whose holder never downloaded the set-up nor fetched it live.

    A key that no longer works (disabled, expired, revoked) has nothing to download: its holder is not
    reminded, on the dashboard or in the list it links to.
    """
    fetched_live = Device.objects.filter(assignment=OuterRef("pk"), last_seen_at__isnull=False)
    return usable_key("key__", now) & Q(~Exists(fetched_live), last_download_at__isnull=True)


def behind_the_rotation() -> Q:
    """Assignments whose holder still has the secret the key's last rotation replaced.

    A download of a secret that is no longer the key's holds the old one (a rotation back to the secret it
    carried leaves it current), and so does a live device whose last fetch was of such a secret; a holder who
    never downloaded holds none. One rule for the dashboard's rollouts and the stale filter, as the key page's
    rollout counts them (devices.rollout).
    """
    return downloaded_earlier_secret() | a_live_device_behind_the_rotation()


def a_live_device_behind_the_rotation() -> Q:
    """A live device of the assignment whose last fetch was of a secret the key no longer has."""
    live = Device.objects.live().filter(assignment=OuterRef("pk"))
    return Q(Exists(live.exclude(fetched_fingerprint="").exclude(fetched_fingerprint=OuterRef("key__fingerprint"))))


def current_verdict() -> Case:
    """The key's current_probe_verdict in SQL: '' when its secret or settings changed after the last probe."""
    return Case(When(probe_counts("key__"), then=F("key__last_probe_verdict")), default=Value(""))


def _count(devices: QuerySet[Device]):
    """How many of `devices` there are, as a column of the row (a subquery, so the list stays one query)."""
    counted = devices.order_by().values("assignment").annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def connections_for(user, filters: ConnectionFilters) -> QuerySet[Assignment]:
    rows = Assignment.objects.visible_to(user).select_related("user", "key__team", "key__gateway")
    live = Device.objects.live().filter(assignment=OuterRef("pk"))
    rows = rows.annotate(
        live_devices=_count(live),
        # Devices with nothing left to do: they fetched since the last rotation and were installed since the key's
        # settings or its gateway's last changed (DeviceQuerySet.current).
        live_devices_current=_count(live.current()),
        last_live_fetch_at=Subquery(
            live.order_by().values("assignment").annotate(at=Max("last_seen_at")).values("at")[:1]
        ),
        current_verdict=current_verdict(),
    )
    if filters.team:
        rows = rows.filter(key__team__slug=filters.team)
    if filters.gateway:
        rows = rows.filter(key__gateway__slug=filters.gateway)
    if filters.user:
        rows = rows.filter(user__username=filters.user)  # the whole name: "bo" is not bob
    now = timezone.now()
    if filters.state == "never_downloaded":
        rows = rows.filter(never_downloaded(now))  # as the dashboard counts them
    elif filters.state == "stale":
        # A stale download, a holder still on the secret before the last rotation (the dashboard's rollout:
        # behind_the_rotation(), whose download half downloaded_before_a_change() holds already), or a live
        # device installed before the key's settings or its gateway's last changed (it must run the installer
        # again).
        rows = rows.filter(
            downloaded_before_a_change()
            | Q(last_download_at__lt=stale_cutoff())
            | a_live_device_behind_the_rotation()
            | Exists(live.needing_reinstall())
        )
    elif filters.state == "failing":
        # The key's failing() rule: a usable key whose probe since the last rotation or settings change failed.
        rows = rows.filter(key__in=GatewayKey.objects.failing())
    elif filters.state == "expired":
        # KeyState.EXPIRED: a revoked or disabled key says so first, whatever its expiry.
        rows = rows.filter(key__revoked_at__isnull=True, key__is_enabled=True, key__expires_at__lte=now)
    field = SORTS[filters.sort.removeprefix("-")]
    # Ties go the sort's way too, so an index on (column, id) serves either direction read backwards.
    if filters.sort.startswith("-"):
        return rows.order_by(F(field).desc(nulls_last=True), "-id")
    return rows.order_by(F(field).asc(nulls_last=True), "id")


def connection_rows(assignments: Iterable[Assignment]) -> Iterator[dict]:
    """The rows of the page, the API and the CSV, from connections_for()."""
    cutoff = stale_cutoff()
    for assignment in assignments:
        yield _row(assignment, cutoff)


# Devices a row of the page names; the row's live_devices counts them all, and links to where the rest are.
ROW_DEVICES = 5


def live_devices_by_assignment(assignments: Iterable[Assignment], limit: int = ROW_DEVICES) -> dict[int, list[Device]]:
    """The first `limit` live devices of each of a page of rows, by assignment id, in one query.

    One member's script can install thousands: the row names a few and counts the rest, so a page costs
    the same whoever holds how many.
    """
    found: dict[int, list[Device]] = {}
    devices = (
        Device.objects.live()
        .filter(assignment__in=[a.pk for a in assignments])
        .select_related("key")
        .annotate(place=Window(RowNumber(), partition_by=F("assignment"), order_by=[F("name").asc(), F("pk").asc()]))
        .filter(place__lte=limit)
    )
    for device in devices.order_by("name", "pk"):
        found.setdefault(device.assignment_id, []).append(device)
    return found


# Rows read from the database at a time by an export: a server-side cursor on PostgreSQL, so a long list
# never sits in memory whole; every figure is a column of the row, so a chunk costs no further query.
EXPORT_CHUNK = 2000


def connections_csv(assignments: Iterable[Assignment]) -> StreamingHttpResponse:
    """The rows as a CSV download, for the page and the API alike, streamed from a cursor in chunks."""
    if isinstance(assignments, QuerySet):
        assignments = assignments.iterator(chunk_size=EXPORT_CHUNK)
    return exports.csv_response(connection_rows(assignments), list(COLUMNS), "connections.csv")


def _row(assignment: Assignment, cutoff) -> dict:
    key = assignment.key
    downloaded = assignment.last_download_at
    return {
        "assignment": assignment.id,
        "user": assignment.user.username,
        "team": key.team.slug,
        "gateway": key.gateway.slug,
        "key_id": str(key.id),
        "key_label": key.label,
        "masked": key.masked,
        "key_state": key.state,
        "assigned_since": assignment.created_at,
        "last_download_at": downloaded,
        "last_download_format": assignment.last_download_format,
        "last_download_ip": assignment.last_download_ip,
        "download_stale": bool(downloaded and (assignment.changed_since_download or downloaded < cutoff)),
        "latest_verdict": key.current_probe_verdict,  # as the filters, the key and the team pages count it
        "latest_probe_at": key.last_probe_at,
        "expires_at": key.expires_at,
        # Annotated by connections_for().
        "live_devices": getattr(assignment, "live_devices", 0),
        "live_devices_current": getattr(assignment, "live_devices_current", 0),
        "last_live_fetch_at": getattr(assignment, "last_live_fetch_at", None),
    }
