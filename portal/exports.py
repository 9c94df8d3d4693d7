"""Streaming CSV and JSON Lines downloads, for lists that may be long."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import datetime

from django.http import StreamingHttpResponse

from portal.api.serializers import AuditEventSerializer
from portal.errors import RuleError


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
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


AUDIT_COLUMNS = list(AuditEventSerializer.Meta.fields)


def export_audit_events(events, export: str) -> StreamingHttpResponse:
    """Every event of `events`, oldest first, as a CSV or JSON Lines download (page and API alike)."""
    rows = (AuditEventSerializer(e).data for e in events.order_by("id").iterator(chunk_size=2000))
    if export == "csv":
        return csv_response(rows, AUDIT_COLUMNS, "audit-events.csv")
    if export == "jsonl":
        return jsonl_response(rows, "audit-events.jsonl")
    raise RuleError(f"export must be csv or jsonl, not {export!r}.", field="export")
