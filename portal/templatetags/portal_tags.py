"""Template helpers shared by every page: the nav's current link, times with their zone, the lock-out wait."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from django import template
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()


@register.simple_tag(takes_context=True)
def nav_link(context, url_name: str, text: str, css_class: str = "") -> str:
    """A nav link, marked aria-current="page" when the page shown is it or lies under it."""
    url = reverse(url_name)
    request = context.get("request")
    path = request.path if request is not None else ""
    current = path == url or (url != "/" and path.startswith(url))
    return format_html(
        '<a href="{}"{}{}>{}</a>',
        url,
        format_html(' class="{}"', css_class) if css_class else "",
        mark_safe(' aria-current="page"') if current else "",
        text,
    )


@register.filter
def moment(value: datetime | None, fmt: str = "Y-m-d H:i") -> str:
    """A time in the portal's zone, named (`2026-11-23 14:05 UTC`); app.js shows it in the viewer's own zone."""
    if not value:
        return ""
    try:
        local = timezone.localtime(value)
    except OverflowError:  # a day from the calendar's end, which the zone cannot write: written in UTC instead
        local = value.astimezone(UTC)
    return format_html(
        '<time datetime="{}" data-local="{}">{} {}</time>',
        value.isoformat(),
        "s" if "s" in fmt else "m",
        dateformat.format(local, fmt),
        local.tzname() or "",
    )


@register.filter
def minutes(value: timedelta | None) -> int:
    """A duration in whole minutes, rounded up (a lock-out of 59.5 minutes is 60 to wait)."""
    if not value:
        return 0
    return max(math.ceil(value.total_seconds() / 60), 1)
