"""What a form's POST hands, through the session, to the page its redirect lands on (Post/Redirect/Get).

Answering a POST with a redirect means a reload asks again with GET: nothing is made or taken away twice.
What the next page needs comes along in the session. A secret shown once (a new access token, an install
link, recovery codes) travels encrypted with the vault's keyring, so the session table never holds it in
the clear, and the first read removes it. A refused form's input travels as typed, with its sentences,
so the page shows it again; a field holding a secret is left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest

from portal.crypto import DecryptionError, get_keyring, remember

SHOWN_ONCE_KEY = "portal.shown_once"
REFUSED_FORM_KEY = "portal.refused_form"
KEPT_AT_MOST = 1000  # characters of a refused form's field, and of a sentence, kept for the next page

FormT = TypeVar("FormT", bound=forms.BaseForm)


def _binding(request: HttpRequest, purpose: str) -> str:
    # The ciphertext opens only for this purpose and this user: pasted into another session it stays shut.
    return f"portal.handover:{purpose}:{getattr(request.user, 'pk', '')}"


def keep_shown_once(request: HttpRequest, purpose: str, value: Any, *, secrets: Collection[str]) -> None:
    """Keep `value` (JSON-able) for the next page to show once; it is encrypted while it waits.

    `secrets` are the one-time secrets in it: the request that shows them keeps them in reach of the
    redaction (portal.crypto.remember), as the one that made them did.
    """
    kept = json.dumps({"value": value, "secrets": list(secrets)})
    ciphertext, _ = get_keyring().encrypt(kept, associated_data=_binding(request, purpose))
    request.session[f"{SHOWN_ONCE_KEY}.{purpose}"] = ciphertext


def take_shown_once(request: HttpRequest, purpose: str) -> Any | None:
    """The value kept for `purpose`, removed as it is read; None when it was read already (a reload)."""
    ciphertext = request.session.pop(f"{SHOWN_ONCE_KEY}.{purpose}", None)
    if not ciphertext:
        return None
    try:
        kept = json.loads(get_keyring().decrypt(ciphertext, associated_data=_binding(request, purpose)))
    except (DecryptionError, ValueError):
        return None  # kept under a key since dropped from the keyring: as good as read
    for secret in kept["secrets"]:
        remember(secret)
    return kept["value"]


def keep_refused_form(
    request: HttpRequest, form: forms.BaseForm, *, page: str, leave_out: Collection[str] = ()
) -> None:
    """Keep what was typed into a refused form, and its sentences, for `page` (the path the redirect lands on).

    What is kept is cut to KEPT_AT_MOST characters a field: a form may be posted with a megabyte in a field,
    which the session row would hold and the next page send back; the sentence still says what was wrong.
    """
    request.session[REFUSED_FORM_KEY] = {
        "form": type(form).__name__,
        "page": page,
        "data": {
            field: str(form.data.get(field, ""))[:KEPT_AT_MOST] for field in form.fields if field not in leave_out
        },
        "errors": {field: [str(e)[:KEPT_AT_MOST] for e in errors] for field, errors in form.errors.items()},
    }


def take_refused_form(
    request: HttpRequest, form_class: type[FormT], *, page: str, make: Callable[[dict], FormT] | None = None
) -> FormT | None:
    """The form kept for `page` as it was refused: bound to what was typed, each sentence on its field."""
    kept = request.session.get(REFUSED_FORM_KEY)
    if not kept or (kept.get("form"), kept.get("page")) != (form_class.__name__, page):
        return None
    del request.session[REFUSED_FORM_KEY]
    form = (make or form_class)(kept["data"])
    for field, sentences in kept["errors"].items():
        shown = list(form.errors.get(field, []))  # a check of the form itself says it again on its own
        for sentence in sentences:
            if sentence not in shown:
                form.add_error(None if field == NON_FIELD_ERRORS or field not in form.fields else field, sentence)
    return form
