"""One envelope for every list of the API: `{"results": [...], "next": <url or null>}`.

Pages are cut by keyset ("after the last row shown"), not by offset, so page 1,000 of the audit
trail costs what page 1 costs and a row inserted meanwhile neither repeats nor skips one. The
list's own ordering is the key, with the primary key added as the last tie-breaker; a nullable
column sorts its nulls last. `?limit=` sets the page size (at most 1,000). The cursor names the
ordering it was made for, so a cursor from another sort is refused with a sentence.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import F, Field, Model, OrderBy, Q, QuerySet
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from portal.errors import RuleError

BAD_CURSOR = "The cursor is not one this list gave out; follow the list's own next link, or start without it."


@dataclass(frozen=True)
class SortKey:
    """One column of a list's ordering: a field path such as `key__team__slug`."""

    path: str
    descending: bool
    field: Field
    nullable: bool

    def order_by(self) -> OrderBy:
        return OrderBy(F(self.path), descending=self.descending, nulls_last=True if self.nullable else None)

    def value_of(self, row: Model):
        value = row
        for part in self.path.split("__"):
            value = value.pk if part == "pk" else getattr(value, part)
        return value

    def after(self, value) -> Q:
        """Rows that sort strictly after `value` in this column (nulls come last)."""
        if value is None:
            return Q(pk__in=[])
        beyond = Q(**{f"{self.path}__{'lt' if self.descending else 'gt'}": value})
        return beyond | Q(**{f"{self.path}__isnull": True}) if self.nullable else beyond

    def equal(self, value) -> Q:
        return Q(**{f"{self.path}__isnull": True}) if value is None else Q(**{self.path: value})


def _resolve(model: type[Model], path: str) -> tuple[Field, bool]:
    """The field at the end of `path`, and whether a null can appear on the way to it."""
    nullable = False
    field: Field | None = None
    for part in path.split("__"):
        if field is not None:
            if not isinstance(field.related_model, type):  # a column has no part after it
                raise ImproperlyConfigured(f"A list is ordered by {path!r}, which is not a field path.")
            model = field.related_model
        try:
            found = model._meta.pk if part == "pk" else model._meta.get_field(part)
        except FieldDoesNotExist:
            found = None
        if not isinstance(found, Field):  # missing, or a reverse relation: no column to order by
            raise ImproperlyConfigured(f"A list is ordered by {path!r}, which is not a field path.")
        field = found
        nullable = nullable or field.null
    if field is None or field.is_relation:
        raise ImproperlyConfigured(f"A list is ordered by {path!r}; order by a column (e.g. {path}__name) instead.")
    return field, nullable


def sort_keys(queryset: QuerySet) -> list[SortKey]:
    """The queryset's ordering as keys, ending with the primary key."""
    keys = []
    for item in queryset.query.order_by or queryset.model._meta.ordering:
        if isinstance(item, str):
            path, descending = item.lstrip("-"), item.startswith("-")
        elif isinstance(item, OrderBy) and isinstance(item.expression, F):
            path, descending = item.expression.name, item.descending
        else:
            raise ImproperlyConfigured(f"A paginated list cannot be ordered by {item!r}.")
        field, nullable = _resolve(queryset.model, path)
        keys.append(SortKey(path, descending, field, nullable))
        if field.primary_key and "__" not in path:
            return keys
    return [*keys, SortKey("pk", False, queryset.model._meta.pk, False)]


def _jsonable(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot go into a cursor")


class KeysetPagination(BasePagination):
    page_size = 100
    max_page_size = 1000
    cursor_query_param = "cursor"
    page_size_query_param = "limit"

    def paginate_queryset(self, queryset: QuerySet, request: Request, view=None) -> list:
        self.request = request
        keys = sort_keys(queryset)
        self.signature = hashlib.sha256(",".join(f"{k.path}:{k.descending}" for k in keys).encode()).hexdigest()[:12]
        queryset = queryset.order_by(*(k.order_by() for k in keys))
        raw = request.query_params.get(self.cursor_query_param)
        if raw:
            queryset = queryset.filter(self._after(keys, self._decode(raw, keys)))
        size = self._page_size(request)
        rows = list(queryset[: size + 1])
        self.next_values = [k.value_of(rows[size - 1]) for k in keys] if len(rows) > size else None
        return rows[:size]

    def get_paginated_response(self, data) -> Response:
        return Response({"results": data, "next": self.get_next_link()})

    def get_next_link(self) -> str | None:
        if self.next_values is None:
            return None
        text = json.dumps({"o": self.signature, "v": self.next_values}, default=_jsonable, separators=(",", ":"))
        cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        return replace_query_param(self.request.build_absolute_uri(), self.cursor_query_param, cursor)

    def _page_size(self, request: Request) -> int:
        try:
            size = int(request.query_params.get(self.page_size_query_param, self.page_size))
        except (TypeError, ValueError):
            return self.page_size
        return min(size, self.max_page_size) if size > 0 else self.page_size

    def _decode(self, raw: str, keys: list[SortKey]) -> list:
        try:
            cursor = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
            values = cursor["v"]
            valid = cursor["o"] == self.signature and isinstance(values, list) and len(values) == len(keys)
        except (ValueError, TypeError, KeyError, binascii.Error):
            valid = False
        if not valid:
            raise RuleError(BAD_CURSOR, field=self.cursor_query_param)
        try:
            return [None if v is None else k.field.to_python(v) for k, v in zip(keys, values, strict=True)]
        except (DjangoValidationError, ValueError, TypeError):
            raise RuleError(BAD_CURSOR, field=self.cursor_query_param) from None

    @staticmethod
    def _after(keys: list[SortKey], values: list) -> Q:
        """Rows after the cursor: equal on the first columns and after it on the next one."""
        condition = Q(pk__in=[])
        for position, key in enumerate(keys):
            step = key.after(values[position])
            for earlier, value in zip(keys[:position], values[:position], strict=True):
                step &= earlier.equal(value)
            condition |= step
        return condition

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
