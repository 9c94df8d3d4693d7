"""The API's refusals in the OpenAPI schema: every operation lists the error answers it can give.

All of them come from one place (config.handlers) in one shape, so they are added here, once, rather
than on each view, where a new endpoint would forget them.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse

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

REFUSALS = {
    400: "The request is refused: `detail` says why, `field` and `errors` say which input.",
    401: "No credentials, or an access token that is invalid, expired or revoked.",
    403: "Signed in, but your role does not allow this.",
    404: "Nothing with that id or slug is visible to you.",
    413: "The request body is larger than the API accepts.",
    415: "The body is not JSON: send Content-Type: application/json.",
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


def refusal(status: int, description: str = "") -> OpenApiResponse:
    """A refusal a view documents itself, where the hook cannot tell it happens (a role checked on a filter)."""
    return OpenApiResponse({"$ref": "#/components/schemas/Error"}, description=description or REFUSALS[status])


def list_or_export(serializer, exports: dict[str, str]) -> dict:
    """A list's 200: a JSON page, or with `?export=` a file in each media type the exports answer (`exports`)."""
    page = OpenApiResponse(serializer, description="A page of the list; with ?export=, every match as a file.")
    files = {
        (200, media_type): OpenApiResponse(OpenApiTypes.STR, description=what) for media_type, what in exports.items()
    }
    return {(200, "application/json"): page, **files}
