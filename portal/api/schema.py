"""Schema helpers for the apps' API views: refusals a view documents itself, and lists that also export files.

The `Error` component they point at, and the refusals every operation gets, are added by the project's
postprocessing hook (config.schema), which reads REFUSALS from here.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse

REFUSALS = {
    400: "The request is refused: `detail` says why, `field` and `errors` say which input (an address holding a "
    "NUL character, %00, is refused so too).",
    401: "No credentials, or an access token that is invalid, expired or revoked.",
    403: "Signed in, but your role does not allow this; or a session that still owes its second factor (the "
    "sentence says where to enter or enrol it).",
    404: "Nothing with that id or slug is visible to you.",
    406: "The Accept header allows none of the media types this answers: application/json, which refusals use too.",
    413: "The request body is larger than the API accepts.",
    415: "The body is not JSON: send Content-Type: application/json.",
}
# The same for a list that also exports a file.
EXPORT_NOT_ACCEPTABLE = (
    "The Accept header allows none of the media types this answers: application/json, or with ?export= the "
    "file's (see 200); refusals are application/json."
)
# A read open to everyone signed in is refused only to a session that has not passed two-factor yet.
TWO_FACTOR_OWED = (
    "A signed-in session that still owes its second factor: the sentence says where to enter or enrol it first."
)


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
