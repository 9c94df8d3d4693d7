"""Real API answers checked against the OpenAPI 3.0 schema the portal serves at /api/v1/schema/.

What a generated client reads: a field the schema says is never null, a status or a media type it
does not list, a field it does not declare, is a client that breaks on a real answer. Request bodies
are checked the same way: a body the request schema accepts is one a client will send.
"""

from __future__ import annotations

import copy
import json
import re

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


def _validator(schema: dict, node: dict) -> jsonschema.Draft7Validator:
    """A validator for `node`, a part of `schema` that may $ref its components."""
    root = _closed(_to_json_schema(copy.deepcopy(schema)))
    wrapped = {**_closed(_to_json_schema(copy.deepcopy(node))), "components": root["components"]}
    return jsonschema.Draft7Validator(wrapped, format_checker=jsonschema.FormatChecker())


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


def request_errors(schema: dict, method: str, path: str, body) -> list[str]:
    """What in a request body the documented request schema refuses (undeclared fields too)."""
    template, op = operation(schema, method, path.split("?")[0])
    documented = op.get("requestBody")
    if documented is None:
        return [] if body in (None, {}) else [f"{method} {template}: no request body is documented"]
    validator = _validator(schema, documented["content"]["application/json"]["schema"])
    return [
        f"{method} {template}: at /{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(body)
    ]
