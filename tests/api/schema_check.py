"""Real API answers checked against the OpenAPI 3.0 schema the portal serves at /api/v1/schema/.

What a generated client reads: a field the schema says is never null, a status or a media type it
does not list, a field it does not declare, is a client that breaks on a real answer. Request bodies
are checked the same way: a body the request schema accepts is one a client will send.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
from urllib.parse import urlsplit

import jsonschema


def served_schema(client) -> dict:
    """The schema as GET /api/v1/schema/?format=json answers it to this client."""
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json"), response["Content-Type"]
    return response.json()


def _to_json_schema(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema; the rest is close enough."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _to_json_schema(v) for k, v in node.items() if k not in ("readOnly", "writeOnly", "example")}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def _closed(node):
    """Objects that declare their properties refuse any other (a strict client's model has no slot for it)."""
    if isinstance(node, list):
        return [_closed(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _closed(v) for k, v in node.items()}
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False
    return node


# jsonschema checks `date-time` and `uri` only with rfc3339-validator and rfc3987 installed, and skips them
# silently without: a `format: uri` field answering "" passed. The checks are written here instead.
FORMATS = jsonschema.FormatChecker()
RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")
URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value) -> bool:
    """RFC 3339: a date, a time and a UTC offset (Z or ±hh:mm), which a time without one lacks."""
    if not isinstance(value, str):
        return True  # `type` says what a non-string is
    if not RFC3339.fullmatch(value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time with a UTC offset")
    datetime.datetime.fromisoformat(value[:-1] + "+00:00" if value[-1] in "Zz" else value)
    return True


@FORMATS.checks("uri", raises=ValueError)
def _is_uri(value) -> bool:
    """An absolute URI: a scheme, then the rest (a relative reference or "" is not one)."""
    if not isinstance(value, str):
        return True
    if not URI_SCHEME.fullmatch(urlsplit(value).scheme) or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an absolute URI")
    return True


def _validator(schema: dict, node: dict, *, formats: bool = True) -> jsonschema.Draft7Validator:
    """A validator for `node`, a part of `schema` that may $ref its components, that checks formats too
    (`formats=False`: as a generated client's validator that checks none)."""
    root = _closed(_to_json_schema(copy.deepcopy(schema)))
    wrapped = {**_closed(_to_json_schema(copy.deepcopy(node))), "components": root["components"]}
    return jsonschema.Draft7Validator(wrapped, format_checker=FORMATS if formats else None)


def _body(response) -> bytes:
    """A response's body, streamed (a CSV export) or not; reading a stream uses it up, so read it once."""
    if getattr(response, "streaming", False):
        content = b"".join(response.streaming_content)
        response.streaming_content = [content]
        return content
    return response.content


def operation(schema: dict, method: str, path: str) -> tuple[str, dict]:
    """The path template and operation that `method path` (a real path, without query) is an instance of."""
    for template, operations in schema["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return template, operations[method.lower()]
    raise AssertionError(f"{method} {path} is not in the schema")


def errors(schema: dict, method: str, path: str, response) -> list[str]:
    """What in a real answer (a test client's response) the schema does not allow: status, media type, body."""
    template, op = operation(schema, method, path.split("?")[0])
    documented = op["responses"].get(str(response.status_code))
    if documented is None:
        return [f"{method} {template}: status {response.status_code} is not documented ({sorted(op['responses'])})"]
    content = documented.get("content") or {}
    body = _body(response)
    media_type = response["Content-Type"].split(";")[0] if body else None
    if media_type is None:
        return [] if not content else [f"{method} {template}: an empty {response.status_code}, documented with a body"]
    if media_type not in content:
        return [f"{method} {template}: {response.status_code} {media_type} is not documented ({sorted(content)})"]
    if media_type != "application/json":
        return []
    validator = _validator(schema, content[media_type]["schema"])
    return [
        f"{method} {template}: at /{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(json.loads(body))
    ]


def request_errors(schema: dict, method: str, path: str, body, *, formats: bool = True) -> list[str]:
    """What in a request body the documented request schema refuses (undeclared fields too); `formats=False`
    checks it as a validator that ignores `format` would."""
    template, op = operation(schema, method, path.split("?")[0])
    documented = op.get("requestBody")
    if documented is None:
        return [] if body in (None, {}) else [f"{method} {template}: no request body is documented"]
    validator = _validator(schema, documented["content"]["application/json"]["schema"], formats=formats)
    return [
        f"{method} {template}: at /{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(body)
    ]
