"""Times as the portal writes them in mail, notices and alerts: in its own zone (TIME_ZONE), named.

Pages print times through the `moment` filter (portal_tags), and app.js then shows each in the
viewer's zone; text that leaves as a sentence (a notice, a mail, a webhook) cannot, so it is written
in TIME_ZONE, the zone an admin types expiries in, whoever's request wrote it.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def in_portal_zone(moment: datetime) -> datetime:
    """The moment in TIME_ZONE, not the zone a request may have activated."""
    return timezone.localtime(moment, timezone.get_default_timezone())


def iso_time(moment: datetime, *, utc_as_z: bool = False) -> str:
    """`2026-11-23T14:05:00+01:00`: a time in TIME_ZONE in ISO 8601, for an audit row's details, read beside the
    row's own time. With utc_as_z, UTC is written `Z`, as the API and the exports write it (audit details keep
    `+00:00`: rows already chained say it, and their HMAC covers it)."""
    written = in_portal_zone(moment).isoformat()
    return f"{written.removesuffix('+00:00')}Z" if utc_as_z and written.endswith("+00:00") else written


def written_time(moment: datetime) -> str:
    """`2026-11-23 14:05 CET`: a time in TIME_ZONE with its zone named, as the pages print it."""
    local = in_portal_zone(moment)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
