"""Checks shared by the management commands' arguments, before any reaches a query or a stored value."""

from __future__ import annotations

from django.core.management.base import CommandError

from portal.errors import echoed


def utf8_argument(value: str, name: str) -> str:
    """`value` as typed, or CommandError when it is not UTF-8: no database driver can send it.

    A terminal in another encoding (Latin-1's "zoë") gives Python bytes that are not UTF-8, which sys.argv holds as
    half a surrogate pair each ("zo\\udceb"); the query would stop on a UnicodeEncodeError.
    """
    try:
        value.encode()
    except UnicodeEncodeError:
        raise CommandError(
            f"{name} {echoed(value)!r} is not valid UTF-8 text; check the terminal's encoding (LANG, LC_ALL)."
        ) from None
    return value
