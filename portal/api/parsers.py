"""The API's JSON parser: DRF's, bounded in size and nesting so no body can exhaust the process.

Without bounds a 10 MB body was parsed in full, and a 100,000-deep array raised RecursionError
(a 500). Nothing the API takes is nested more than a few levels or larger than a few KiB.

JSON may spell half of a UTF-16 surrogate pair ("\\ud800") on its own; Python parses it into a string that
is not Unicode text, which no database, file or JSON answer can encode (a refusal echoing it was a 500).
"""

from __future__ import annotations

import re

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

from portal.errors import echoed

MAX_JSON_DEPTH = 32
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")  # json.loads joins a whole pair into one character


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


class NotUnicode(ParseError):
    """A body holding a string or an object key that is not Unicode text; `field` is the top-level key it is under."""

    def __init__(self, detail: str, *, field: str = ""):
        super().__init__(detail)
        self.field = field


def lone_surrogate(value) -> tuple[str, str, bool] | None:
    """The first half surrogate pair in a parsed JSON value's strings and keys: the character, the top-level key it
    is under ("" for none, or when it is in that key itself), and whether it is in a key rather than a value."""
    pending: list[tuple[object, str]] = [(value, "")]
    while pending:
        item, field = pending.pop()
        if isinstance(item, str):
            if found := LONE_SURROGATE.search(item):
                return found.group(), field, False
        elif isinstance(item, dict):
            for key, child in item.items():
                if found := LONE_SURROGATE.search(key):
                    return found.group(), field, True
                pending.append((child, field or (key if item is value else "")))
        elif isinstance(item, list):
            pending.extend((child, field) for child in item)
    return None


def refuse_lone_surrogates(value) -> None:
    """Raise NotUnicode, with a sentence that shows the half pair escaped and never the text around it."""
    found = lone_surrogate(value)
    if found is None:
        return
    character, field, in_key = found
    shown = echoed(field)
    if in_key:
        where = f" in a name inside {shown}" if field else " in a field name"
    else:
        where = f" in {shown}" if field else ""
    raise NotUnicode(
        f"The JSON body holds half of a UTF-16 surrogate pair (\\u{ord(character):04x}){where}: send text as valid "
        "Unicode; a character beyond U+FFFF is written as both halves of its pair, like \\ud83d\\ude80.",
        field=shown,
    )


class BoundedJSONParser(JSONParser):
    """JSON of at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes and MAX_JSON_DEPTH levels of nesting, all Unicode text."""

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
        refuse_lone_surrogates(value)
        return value
