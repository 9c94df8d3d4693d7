"""One exception handler for the API: every error is `{"detail": "<a sentence>"}`, never a 500."""

from __future__ import annotations

import logging
import re

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from portal.api.parsers import NotUnicode
from portal.crypto import DecryptionError
from portal.errors import AlreadyGone, RuleError

logger = logging.getLogger(__name__)


# Keys of a ValidationError's detail that name no input: the body as a whole, or a model's rule.
NOT_FIELDS = ("non_field_errors", "detail")


def _flatten(detail, prefix: str = "") -> list[str]:
    if isinstance(detail, dict):
        out = []
        for field, value in detail.items():
            label = "" if field in NOT_FIELDS else f"{field}: "
            out += _flatten(value, prefix + label)
        return out
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item, prefix)]
    return [f"{prefix}{detail}"]


# get_object_or_404's sentence, and what the API says instead: the same for what was removed (a retried DELETE)
# and what never was, or is not the caller's to see.
DJANGO_NOT_FOUND = re.compile(r"No \w+ matches the given query\.")
NOT_HERE = "Nothing with that id or name is here: removed already, never made, or not yours to see."


def _in_body(context, field: str) -> bool:
    """Whether `field` is one of the request body's (sent, or left out when required), not a query parameter, which
    a rule may refuse too and which has no errors."""
    request = context.get("request")
    return request is not None and request.method in ("POST", "PUT", "PATCH") and field not in request.query_params


def exception_handler(exc, context):
    if isinstance(exc, AlreadyGone):
        set_rollback()
        return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, RuleError):
        set_rollback()
        body: dict[str, object] = {"detail": str(exc)}
        if exc.field:
            body["field"] = exc.field
            if _in_body(context, exc.field):  # a body's field, as the serializer names the ones it refuses
                body["errors"] = {exc.field: [str(exc)]}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404) and DJANGO_NOT_FOUND.fullmatch(str(exc)):
        # get_object_or_404's "No Membership matches the given query." names a model, not what the client sent.
        exc = exceptions.NotFound(NOT_HERE)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError({"detail": " ".join(exc.messages)})
    elif isinstance(exc, DecryptionError):
        logger.error("A stored key could not be decrypted: %s", exc)
        return Response(
            {"detail": f"The portal cannot open this key: {exc} Ask an administrator to check the keyring."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, NotUnicode) and exc.field:
        response.data["field"] = exc.field
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"detail": " ".join(_flatten(fields))}
        # `errors` is each refused field's sentences (a dict's or a list's flattened, "X-B: ..."), as the
        # README says; a refusal of the body as a whole names no field, so it is in `detail` alone.
        named = {name: _flatten(value) for name, value in fields.items() if name not in NOT_FIELDS}
        if named:
            response.data["errors"] = named
        if len(named) == 1 and len(fields) == 1:  # one input at fault, as a RuleError names it
            response.data["field"] = next(iter(named))
    return response
