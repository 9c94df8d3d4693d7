"""The API's refusals in the OpenAPI schema: every operation lists the error answers it can give.

All of them come from one place (config.handlers) in one shape, so they are added here, once, rather
than on each view, where a new endpoint would forget them.
"""

from __future__ import annotations

from portal.api.schema import REFUSALS

ERROR = {
    "type": "object",
    "description": "A refusal: what went wrong, as a sentence for a person.",
    "properties": {
        "detail": {"type": "string", "description": "A sentence for a person."},
        "field": {"type": "string", "description": "The one input at fault, when one is."},
        "errors": {
            "type": "object",
            "description": 'Each refused field\'s messages, as sentences: {"slug": ["..."]}.',
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "required": ["detail"],
}

WRITES = ("post", "put", "patch", "delete")


def _statuses(method: str, operation: dict) -> list[int]:
    """The refusals an operation can answer: any of them for a write, fewer for a read."""
    if method in WRITES:
        return [400, 401, 403, 404, 413] + ([415] if "requestBody" in operation else [])
    parameters = {p["in"] for p in operation.get("parameters", [])}
    statuses = [401]
    if "query" in parameters:  # a filter, cursor or limit the API cannot read
        statuses.append(400)
    if "path" in parameters:  # a named team, key or channel: not visible to you, or not to your role
        statuses += [403, 404]
    return statuses


def add_error_responses(result: dict, generator, request, public) -> dict:
    """A drf-spectacular postprocessing hook: the `Error` component, and each operation's refusals."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for code in _statuses(method, operation):
                # A response a view documents itself (a download's 404) stays as it is.
                responses.setdefault(str(code), {"description": REFUSALS[code], "content": body})
            operation["responses"] = dict(sorted(responses.items()))
    return result
