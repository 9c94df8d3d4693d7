"""Sentences about who holds a key, worded once (gateways.devices) for pages and messages alike."""

from django import template

from gateways import devices

register = template.Library()


@register.filter
def developers_holding(count: int) -> str:
    """'1 developer holds' or '3 developers hold'."""
    return devices.developers_holding(count)
