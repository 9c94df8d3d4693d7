"""One envelope for every list of the API: `{"results": [...], "next": <url or null>}`.

Pages are cut by keyset (portal.pagination.keyset_page), so page 1,000 of the audit trail costs what
page 1 costs. `?limit=` sets the page size (at most 1,000); `?cursor=` is the previous page's `next`.
"""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from portal.pagination import keyset_page


class KeysetPagination(BasePagination):
    page_size = 100
    max_page_size = 1000
    cursor_query_param = "cursor"
    page_size_query_param = "limit"

    def paginate_queryset(self, queryset: QuerySet, request: Request, view=None) -> list:
        self.request = request
        cursor = request.query_params.get(self.cursor_query_param)
        # A view with wide rows says so (`sort_ids_first = True`); joined rows count as wide anyway.
        ids_first = getattr(view, "sort_ids_first", None)
        page = keyset_page(queryset, cursor, self._page_size(request), ids_first=ids_first)
        self.next_cursor = page.next_cursor
        return page.rows

    def get_paginated_response(self, data) -> Response:
        return Response({"results": data, "next": self.get_next_link()})

    def get_next_link(self) -> str | None:
        if self.next_cursor is None:
            return None
        return replace_query_param(self.request.build_absolute_uri(), self.cursor_query_param, self.next_cursor)

    def _page_size(self, request: Request) -> int:
        try:
            size = int(request.query_params.get(self.page_size_query_param, self.page_size))
        except (TypeError, ValueError):
            return self.page_size
        return min(size, self.max_page_size) if size > 0 else self.page_size

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "format": "uri", "nullable": True, "description": "The next page."},
            },
        }

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": self.cursor_query_param,
                "in": "query",
                "required": False,
                "description": "Where the page starts: the cursor of the previous page's `next` link.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "in": "query",
                "required": False,
                "description": f"Rows per page (default {self.page_size}, at most {self.max_page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]
