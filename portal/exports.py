"""Streaming CSV and JSON Lines downloads, for lists that may be long."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import datetime

from django.http import StreamingHttpResponse
from django.utils import timezone
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.utils.mediatypes import media_type_matches

from portal.api.serializers import AuditEventSerializer
from portal.errors import RuleError
from portal.times import iso_time


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value) -> str:
    if isinstance(value, datetime):
        # In TIME_ZONE and with UTC as Z, as the API and the audit export write the same moment.
        return iso_time(value, utc_as_z=True) if timezone.is_aware(value) else value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    text = "" if value is None else str(value)
    # A cell starting with = + - @ is a formula to a spreadsheet: keep it text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def csv_response(rows: Iterable[dict], columns: list[str], filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(columns)
        for row in rows:
            yield writer.writerow([_cell(row.get(c)) for c in columns])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def jsonl_response(rows: Iterable[dict], filename: str) -> StreamingHttpResponse:
    def lines():
        for row in rows:
            yield json.dumps(row, default=str, ensure_ascii=False) + "\n"

    response = StreamingHttpResponse(lines(), content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# What each `?export=` answers, as the schema lists it (portal.api.schema.list_or_export).
EXPORT_MEDIA_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


class FileOrJSONNegotiation(DefaultContentNegotiation):
    """A download answers its file whatever the client accepts, and its refusals in JSON.

    The file is an HttpResponse of its format's media type, which no renderer makes: a script asking for it
    (`Accept: text/x-shellscript` on install.sh) would otherwise be refused with 406 before the view ran.
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


class ExportNegotiation(DefaultContentNegotiation):
    """A list with `?export=`: its file to a client that accepts JSON or the export's media type (the schema
    lists both), its refusals in JSON; a 406 with a sentence to a client that accepts neither."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            export = request.query_params.get("export", "")
            media_type = EXPORT_MEDIA_TYPES.get(export)
            if media_type and any(media_type_matches(media_type, a) for a in self.get_accept_list(request)):
                return renderers[0], renderers[0].media_type
        if media_type:
            raise NotAcceptable(
                f"With ?export={export} this address answers {media_type}, and refusals in application/json; "
                "the request's Accept header allows neither."
            )
        raise NotAcceptable(
            "This address answers application/json (a file only with ?export=); the request's Accept header "
            "does not allow it."
        )


AUDIT_COLUMNS = list(AuditEventSerializer.Meta.fields)


def export_audit_events(events, export: str) -> StreamingHttpResponse:
    """Every event of `events`, oldest first, as a CSV or JSON Lines download (page and API alike)."""
    rows = (AuditEventSerializer(e).data for e in events.order_by("id").iterator(chunk_size=2000))
    if export == "csv":
        return csv_response(rows, AUDIT_COLUMNS, "audit-events.csv")
    if export == "jsonl":
        return jsonl_response(rows, "audit-events.jsonl")
    raise RuleError(f"export must be csv or jsonl, not {export!r}.", field="export")
