"""Paging for the pages and the API alike: page positions read from a query string, and keyset pages.

`str.isdigit()` is true for superscripts such as "²", which `int()` refuses, and a number such as
10**24 does not fit a database integer: both used to end in a 500. A value is accepted only as
plain ASCII digits within a bound; anything else is None and the caller says so or starts over.

Lists are cut by keyset ("after the last row shown"), not by offset, so page 1,000 costs what page 1
costs and a row inserted meanwhile neither repeats nor skips one. The list's own ordering is the key,
with the primary key added as the last tie-breaker; a nullable column sorts its nulls last. The
cursor names the ordering it was made for, so a cursor from another sort is refused with a sentence.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

from django.contrib import messages
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import F, Field, Model, OrderBy, Q, QuerySet
from django.db.models.sql.where import WhereNode
from django.http import HttpRequest

from portal.errors import RuleError

# The largest id or position a query may name: the biggest value a 64-bit database integer holds.
MAX_POSITION = 2**63 - 1


def query_number(raw: str | None, *, maximum: int, minimum: int = 1) -> int | None:
    """A whole number from minimum to maximum written in ASCII digits (an optional leading '-'), or None."""
    text = (raw or "").strip()
    digits = text.removeprefix("-")
    if not digits or not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(maximum)):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None


BAD_CURSOR = "The cursor is not one this list gave out; follow the list's own next link, or start without it."


@dataclass(frozen=True)
class SortKey:
    """One column of a list's ordering: a field path such as `key__team__slug`, or an annotation's name."""

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
        annotation = queryset.query.annotations.get(path)
        if annotation is not None:  # a computed column, such as the connections' current verdict
            field, nullable = annotation.output_field, True
        else:
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


@dataclass(frozen=True)
class KeysetPage:
    rows: list
    next_cursor: str | None  # None on the last page


def ordering_signature(model: type[Model], keys: list[SortKey]) -> str:
    """What a cursor is good for: one list (its model) in one order. Lists of different rows can share an order."""
    text = ",".join([model._meta.label, *(f"{k.path}:{k.descending}" for k in keys)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def first_rows(queryset: QuerySet, limit: int, *, ids_first: bool | None = None) -> list:
    """The queryset's first `limit` rows in its order; wide rows (joined ones, by default) are sorted by id first.

    A database sorts what it selects: sorting thousands of wide rows to keep a hundred costs more
    than sorting their ids alone and then reading the hundred by id.
    """
    return _read_first(queryset, limit, ids_first)[0]


def _read_first(queryset: QuerySet, limit: int, ids_first: bool | None) -> tuple[list, int]:
    """(first_rows, how many rows the list held when its order was read, at most `limit`).

    Read by ids first, a row removed between the two reads (an assignment taken back meanwhile) is left out
    rather than failing the page; the count still says whether the list went on past it.
    """
    if ids_first is None:
        ids_first = bool(queryset.query.select_related)
    if not ids_first:
        read = list(queryset[:limit])
        return read, len(read)
    ids = list(queryset.values_list("pk", flat=True)[:limit])
    # Read the rows by id alone: the list's own filters, already applied, could lead the planner astray.
    # The same queryset without its WHERE keeps what the rows carry (joins, annotations such as the
    # connections' device counts); dropping a filter only widens it, and the ids narrow it again.
    rows = queryset.order_by()
    rows.query.where = WhereNode()
    found = rows.in_bulk(ids)
    return [found[pk] for pk in ids if pk in found], len(ids)


def _computed_columns_named(queryset: QuerySet) -> QuerySet:
    """The queryset with each computed column of its ordering (a team's ReadingOrder("name")) as an annotation
    sorted by.

    The cursor then holds each row's value of that column as the database gave it, and the next page compares
    it in the same expression, collation included, so paging follows the order the database sorted in.
    """
    ordering = list(queryset.query.order_by or queryset.model._meta.ordering)
    computed = {}
    for position, item in enumerate(ordering):
        if isinstance(item, str) or (isinstance(item, OrderBy) and isinstance(item.expression, F)):
            continue
        expression, descending = (item.expression, item.descending) if isinstance(item, OrderBy) else (item, False)
        name = f"ordering_{position}"
        computed[name] = expression
        ordering[position] = f"-{name}" if descending else name
    return queryset.annotate(**computed).order_by(*ordering) if computed else queryset


def keyset_page(queryset: QuerySet, cursor: str | None, size: int, *, ids_first: bool | None = None) -> KeysetPage:
    """The `size` rows after `cursor` (from the start without one); a cursor this list did not give out is a RuleError."""
    queryset = _computed_columns_named(queryset)
    keys = sort_keys(queryset)
    signature = ordering_signature(queryset.model, keys)
    queryset = queryset.order_by(*(k.order_by() for k in keys))
    if cursor:
        queryset = queryset.filter(_after(keys, _decode(cursor, keys, signature)))
    for _ in range(3):
        rows, held = _read_first(queryset, size + 1, ids_first)
        if held <= size:
            return KeysetPage(rows, None)
        if rows:  # the next page starts after the last row shown, whichever rows went meanwhile
            return KeysetPage(rows[:size], cursor_after(keys, rows[:size][-1]))
        # Every row read was removed between the two reads: read again.
    return KeysetPage([], None)


def page_asked(request: HttpRequest, queryset: QuerySet, size: int) -> tuple[KeysetPage, bool]:
    """A page's list as its `?cursor=` asks, and whether that is the first page. A cursor the list did not give
    out (a forged or stale bookmark) shows the first page, with the sentence why as a message."""
    cursor = request.GET.get("cursor", "")
    try:
        return keyset_page(queryset, cursor, size), not cursor
    except RuleError as exc:
        messages.error(request, f"{exc} Showing the first page.")
        return keyset_page(queryset, None, size), True


def cursor_after(keys: list[SortKey], row: Model) -> str:
    """The cursor of the page that starts after `row`."""
    values = [k.value_of(row) for k in keys]
    text = json.dumps({"o": ordering_signature(type(row), keys), "v": values}, default=_jsonable, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(raw: str, keys: list[SortKey], signature: str) -> list:
    try:
        cursor = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        values = cursor["v"]
        valid = cursor["o"] == signature and isinstance(values, list) and len(values) == len(keys)
    except (ValueError, TypeError, KeyError, binascii.Error, RecursionError):
        valid = False
    if not valid:
        raise RuleError(BAD_CURSOR, field="cursor")
    try:
        return [None if v is None else _comparable(k.field.to_python(v)) for k, v in zip(keys, values, strict=True)]
    except (DjangoValidationError, ValueError, TypeError, OverflowError):
        raise RuleError(BAD_CURSOR, field="cursor") from None


def _comparable(value):
    """A cursor's value as the database can compare it, or ValueError: an edited cursor may hold Infinity, a
    number past 64 bits, a NUL, half a surrogate pair or a time that leaves the calendar once moved to UTC, which the database would
    fail on."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(value)
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ValueError(value)
    if isinstance(value, str):
        if "\x00" in value:  # no column holds one; PostgreSQL refuses it in a query
            raise ValueError(value)
        value.encode()  # UnicodeEncodeError, a ValueError, for a lone surrogate ("\ud800"), which no driver can send
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(value)  # every cursor this list gives out carries its offset
        value.astimezone(UTC)  # OverflowError past year 1 or 9999
    return value


def _after(keys: list[SortKey], values: list) -> Q:
    """Rows after the cursor: equal on the first columns and after it on the next one."""
    condition = Q(pk__in=[])
    for position, key in enumerate(keys):
        step = key.after(values[position])
        for earlier, value in zip(keys[:position], values[:position], strict=True):
            step &= earlier.equal(value)
        condition |= step
    return condition
