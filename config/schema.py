"""The API's refusals in the OpenAPI schema: every operation lists the error answers it can give.

All of them come from one place (config.handlers, and the middleware before it) in one shape, so they are
added here, once, rather than on each view, where a new endpoint would forget them.
"""

from __future__ import annotations

from portal.api.schema import EXPORT_NOT_ACCEPTABLE, REFUSALS, TWO_FACTOR_OWED
from portal.exports import FileOrJSONNegotiation

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
SESSION = "cookieAuth"  # the security scheme of a signed-in browser's session
# Negotiations that answer whatever the request accepts (a download's file): never a 406.
ANSWERS_ANY_ACCEPT = (FileOrJSONNegotiation,)


def _statuses(method: str, operation: dict, view_class: type | None = None) -> dict[int, str]:
    """The refusals an operation can answer, each with what it means there: any of them for a write, fewer for a read.

    Some come before any view: RejectNulCharactersMiddleware's 400 (a NUL in the address, too many query fields),
    TwoFactorMiddleware's 403 to a session that still owes its second factor, content negotiation's 406.
    """
    parameters = {p["in"] for p in operation.get("parameters", [])}
    exports = any(p["in"] == "query" and p["name"] == "export" for p in operation.get("parameters", []))
    by_session = any(SESSION in requirement for requirement in operation.get("security", []))
    statuses = {400: REFUSALS[400], 401: REFUSALS[401]}
    if method in WRITES:
        statuses |= {403: REFUSALS[403], 404: REFUSALS[404], 413: REFUSALS[413]}
        if "requestBody" in operation:
            statuses[415] = REFUSALS[415]
    elif "path" in parameters:  # a named team, key or channel: not visible to you, or not to your role
        statuses |= {403: REFUSALS[403], 404: REFUSALS[404]}
    elif by_session:
        statuses[403] = TWO_FACTOR_OWED
    negotiation = getattr(view_class, "content_negotiation_class", None)
    if not (isinstance(negotiation, type) and issubclass(negotiation, ANSWERS_ANY_ACCEPT)):
        statuses[406] = EXPORT_NOT_ACCEPTABLE if exports else REFUSALS[406]
    return dict(sorted(statuses.items()))


def _view_classes(generator) -> dict[tuple[str, str], type | None]:
    """Each operation's view class, by (path, method), as the generator found them."""
    endpoints = getattr(generator, "endpoints", None) or []
    return {(path, method.lower()): getattr(callback, "cls", None) for path, _, method, callback in endpoints}


def _blank_or_formatted(node):
    """drf-spectacular writes a field that takes "" besides a format as `oneOf [formatted, maxLength 0]`; a validator
    that checks no formats (jsonschema without its extras, most generated clients) finds "" valid under both and
    refuses it. `anyOf` says the same and takes "" under either."""
    if isinstance(node, list):
        return [_blank_or_formatted(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _blank_or_formatted(v) for k, v in node.items()}
    choices = node.get("oneOf")
    if isinstance(choices, list) and len(choices) == 2 and choices[1] == {"type": "string", "maxLength": 0}:
        node["anyOf"] = node.pop("oneOf")
    return node


def add_error_responses(result: dict, generator, request, public) -> dict:
    """A drf-spectacular postprocessing hook: the `Error` component, and each operation's refusals."""
    result = _blank_or_formatted(result)
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    views = _view_classes(generator)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for code, description in _statuses(method, operation, views.get((path, method))).items():
                # A response a view documents itself (a download's 404) stays as it is.
                responses.setdefault(str(code), {"description": description, "content": body})
            operation["responses"] = dict(sorted(responses.items()))
    return result
