"""Real API answers checked against the OpenAPI 3.0 schema the portal serves at /api/v1/schema/.

What a generated client reads: a field the schema says is never null, a status or a media type it
does not list, is a client that breaks on a real answer.
"""

from __future__ import annotations

import copy
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
    media_type = response["Content-Type"].split(";")[0] if response.content else None
    if media_type is None:
        return [] if not content else [f"{method} {template}: an empty {response.status_code}, documented with a body"]
    if media_type not in content:
        return [f"{method} {template}: {response.status_code} {media_type} is not documented ({sorted(content)})"]
    if media_type != "application/json":
        return []
    root = _to_json_schema(copy.deepcopy(schema))
    wrapped = {**_to_json_schema(copy.deepcopy(content[media_type]["schema"])), "components": root["components"]}
    validator = jsonschema.Draft7Validator(wrapped)
    return [
        f"{method} {template}: at /{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(response.json())
    ]
