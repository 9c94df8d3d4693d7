"""The API's pagination classes: DRF's, bounded so no query value reaches the database unchecked."""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination, LimitOffsetPagination

from portal.pagination import MAX_POSITION, query_number


class LimitOffset(LimitOffsetPagination):
    """`?limit=&offset=`; a limit past max_limit is cut to it (DRF's own rule for a nonsense value)."""

    max_limit = 1000


class IdCursor(CursorPagination):
    """A cursor over an integer id; a cursor this list did not hand out is a 404 with a sentence."""

    ordering = "-id"
    invalid_cursor_message = "That cursor is not one this list handed out. Start again without `cursor`."

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        position = cursor.position if cursor is not None else None
        if position is not None and query_number(position, minimum=-MAX_POSITION, maximum=MAX_POSITION) is None:
            raise NotFound(self.invalid_cursor_message)
        return cursor
