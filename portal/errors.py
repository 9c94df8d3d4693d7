"""The one exception for a refusal a person should read, and its conversion for a web form.

Rules and services raise `RuleError`; each edge converts it once: a form error here
(`add_to_form`), a 400 `{"detail", "field"}` in the API (config.handlers), a `CommandError`
in a management command. Pure: no Django import, so the pure modules can raise it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class RuleError(ValueError):
    """An action or a value breaks one of the portal's rules; the message says how to fix it.

    `field` names the input at fault, so a form or an API client can show the sentence next to it.
    """

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class AlreadyGone(RuleError):
    """What the action is for has gone already: removed, withdrawn, taken back (often by the same request sent
    twice, as a retrying client does). The API answers 404 with the sentence, as for what never was, so a script
    can take either for "done"; a page shows the sentence."""


# A refused name or value quoted in a sentence is cut to this many characters: a 100,000-character field
# name is not echoed whole.
ECHOED_AT_MOST = 80


def echoed(text: str) -> str:
    """`text` as a refusal quotes it: whole when short, else its first ECHOED_AT_MOST characters and "…"."""
    return text if len(text) <= ECHOED_AT_MOST else text[:ECHOED_AT_MOST] + "…"


class _Form(Protocol):
    @property
    def fields(self) -> Mapping[str, object]: ...

    def add_error(self, field: str | None, error: str) -> None: ...


def add_to_form(form: _Form, exc: RuleError) -> None:
    """Show the sentence next to its field when the form has that field, else above the form."""
    form.add_error(exc.field if exc.field in form.fields else None, str(exc))
