"""The API's JSON parser: DRF's, bounded in size and nesting so no body can exhaust the process.

Without bounds a 10 MB body was parsed in full, and a 100,000-deep array raised RecursionError
(a 500). Nothing the API takes is nested more than a few levels or larger than a few KiB.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

MAX_JSON_DEPTH = 32


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"


def json_depth(value, *, stop_after: int = MAX_JSON_DEPTH) -> int:
    """How many arrays and objects deep a parsed JSON value goes (a scalar is 0); stops past stop_after."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if not isinstance(item, (list, dict)):
            continue
        deepest = max(deepest, depth)
        if deepest > stop_after:
            break
        pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


class BoundedJSONParser(JSONParser):
    """JSON of at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes and MAX_JSON_DEPTH levels of nesting."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1)  # never more, whatever Content-Length claims
        if len(body) > limit:
            raise BodyTooLarge(
                f"The request body is larger than {limit // 1024} KiB, the most the API accepts. "
                "Nothing the API takes comes near that; check what is being sent."
            )
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        too_deep = f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep; nothing the API takes is."
        try:
            value = json.loads(body.decode(encoding), parse_constant=json.strict_constant if self.strict else None)
        except RecursionError:
            raise ParseError(too_deep) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if json_depth(value) > MAX_JSON_DEPTH:
            raise ParseError(too_deep)
        return value
