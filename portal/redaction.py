"""Redaction: take every encoding of a secret out of a text before anything stores or shows it.

Used for what a probe stores of a gateway's answer, and as the last net of Django's error page
and of every log record (`SecretSafeExceptionReporter`, `install_log_redaction()`).

A gateway that echoes a key rarely echoes it verbatim: JSON escapes its quotes and slashes, a
URL percent-encodes it, an auth header travels base64-encoded, an HTML page escapes it. So
`redact()` removes every run of at least `RUN` consecutive characters of the secret, found in
the text as it is, in the text with its escapes decoded (JSON, percent, HTML; twice, for an escape
of an escape), and in the exact escaped and base64 forms of the secret. Pure: text in, text out.
"""

from __future__ import annotations

import base64
import bisect
import html
import json
import logging
import re
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from django.template.context import BaseContext
from django.template.defaultfilters import pprint
from django.utils.datastructures import MultiValueDict
from django.utils.safestring import SafeString, mark_safe
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter
from rest_framework.serializers import BaseSerializer

from portal.crypto import Secret, reveal, secrets_in_reach

# A URL in a setting (EMAIL_URL, DATABASE_URL, a redis LOCATION): its password is read as URL parsers read it.
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def hide_url_passwords(text: str, substitute: str) -> str:
    """`text` with the password of each scheme://user:password@host in it replaced by `substitute`.

    The user info ends at the host's last @, as urlsplit (and dj-database-url, Django's mail URL) read it:
    a user name that is an e-mail address, or an @ in the password, hides nothing.
    """

    def hide(match: re.Match) -> str:
        url = match.group(0)
        try:
            parts = urlsplit(url)
            password = parts.password
        except ValueError:
            return url
        if password is None:
            return url
        userinfo, _, host = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:{substitute}@{host}"))

    return URL.sub(hide, text)


# Shorter runs are too common to mean anything; longer ones would let a useful piece through.
RUN = 8
# A key holds no space (gateways.rules.clean_secret), so no run of a key can cross this marker.
MARKER = "[secret removed]"

_ESCAPE = re.compile(
    r"\\u[0-9a-fA-F]{4}"  # JSON \u0022
    r"|\\[\"\\/]"  # JSON \" \\ \/
    r"|%[0-9a-fA-F]{2}"  # percent-encoding, either case
    r"|&#[xX][0-9a-fA-F]{1,6};|&#[0-9]{1,7};|&[A-Za-z]{2,8};"  # HTML character references
)

Spans = list[tuple[int, int]]


def _unescape(escape: str) -> str:
    if escape.startswith("\\u"):
        return chr(int(escape[2:], 16))
    if escape.startswith("\\"):
        return escape[1]
    if escape.startswith("%"):
        return chr(int(escape[1:], 16))
    return html.unescape(escape)


class _Decoded:
    """A text with one level of escapes decoded, able to say where each decoded character came from.

    Only the escapes are remembered (decoded position, start in the source, shift after it): a debug
    page of 300 kB decodes in milliseconds.
    """

    def __init__(self, source: str):
        pieces, self.escapes, position, shift = [], [], 0, 0
        for match in _ESCAPE.finditer(source):
            decoded = _unescape(match.group())
            if len(decoded) != 1:  # an unknown entity such as &nbsp1; stays as written
                continue
            pieces += [source[position : match.start()], decoded]
            extra = match.end() - match.start() - 1  # how much shorter the decoded text gets here
            self.escapes.append((match.start() - shift, match.start(), shift + extra))
            shift += extra
            position = match.end()
        self.text = "".join(pieces) + source[position:]
        self._positions = [escape[0] for escape in self.escapes]

    def span(self, index: int) -> tuple[int, int]:
        """Where decoded character `index` is in the source."""
        found = bisect.bisect_right(self._positions, index) - 1
        if found < 0:
            return index, index + 1
        position, start, shift = self.escapes[found]
        if position == index:
            return start, index + shift + 1
        return index + shift, index + shift + 1


def _runs(text: str, grams: set[str], widths: set[int]) -> Spans:
    """Where `text` holds one of `grams` (whose lengths are `widths`)."""
    if len(text) < len(grams):  # a short text: look its own pieces up
        return [(i, i + w) for w in widths for i in range(len(text) - w + 1) if text[i : i + w] in grams]
    spans: Spans = []
    for gram in grams:
        start = text.find(gram)
        while start != -1:  # str.find runs in C: a debug page of 300 kB takes milliseconds per piece
            spans.append((start, start + len(gram)))
            start = text.find(gram, start + 1)
    return spans


def _grams(needle: str) -> set[str]:
    """Every run of RUN characters of `needle` (the whole of it, if shorter)."""
    width = min(RUN, len(needle))
    return {needle[i : i + width] for i in range(len(needle) - width + 1)} if needle else set()


def _base64_pieces(secret: str) -> set[str]:
    """The part of the secret's base64 that is the same wherever it starts in a longer encoded text."""
    raw = secret.encode()
    pieces = set()
    for shift in range(3):  # the secret can start at any byte of a 3-byte group
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        piece = encoded[-(-8 * shift // 6) : 8 * (shift + len(raw)) // 6]
        pieces |= {piece, piece.translate(str.maketrans("+/", "-_"))}
    return pieces


def _escape_symbols(secret: str, form: str) -> str:
    return "".join(ch if ch.isalnum() else form % ord(ch) for ch in secret)


def encoded_forms(secret: str) -> frozenset[str]:
    """The secret as common escaping and encoding write it, besides itself.

    Found as written, these need no decoding, so text just before one (a stray `%` or `\\`) cannot
    shift the decoder off it.
    """
    json_escaped = json.dumps(secret)[1:-1]
    return frozenset(
        {
            secret,
            json_escaped,
            json_escaped.replace("/", "\\/"),
            _escape_symbols(secret, "\\u%04x"),
            quote(secret, safe=""),
            quote(secret),
            quote_plus(secret),
            _escape_symbols(secret, "%%%02x"),
            html.escape(secret),
            html.escape(secret, quote=False),
            _escape_symbols(secret, "&#%d;"),
            *_base64_pieces(secret),
        }
        - {""}
    )


class Redactor:
    """Every encoding of one secret, prepared once to redact many texts (a probe's result, a page)."""

    __slots__ = ("_form_widths", "_forms", "_runs_of_secret", "_secret", "_secret_widths")

    def __init__(self, secret: Secret | str):
        # The encodings are worked out on the first non-empty text: a probe that got nothing to
        # redact (an ok answer) does not pay for them.
        self._secret: Secret | str | None = secret

    def _prepare(self) -> None:
        plain = reveal(self._secret) if self._secret is not None else ""
        self._secret = None
        self._forms = {gram for form in encoded_forms(plain) for gram in _grams(form)} if plain else set()
        self._form_widths = {len(gram) for gram in self._forms}
        self._runs_of_secret = _grams(plain)
        self._secret_widths = {len(gram) for gram in self._runs_of_secret}

    def __repr__(self) -> str:
        return "Redactor(********)"

    def spans(self, text: str) -> Spans:
        """The merged spans of `text` that hold some encoding of the secret."""
        if not text:
            return []
        if self._secret is not None:
            self._prepare()
        if not self._forms:
            return []
        found = _runs(text, self._forms, self._form_widths)
        levels: list[_Decoded] = []
        source = text
        for _ in range(2):
            if not _ESCAPE.search(source):
                break
            levels.append(_Decoded(source))
            source = levels[-1].text
            for start, end in _runs(source, self._runs_of_secret, self._secret_widths):
                for level in reversed(levels):  # back through each decoding to the text itself
                    start, end = level.span(start)[0], level.span(end - 1)[1]
                found.append((start, end))
        merged: Spans = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def __call__(self, text: str) -> str:
        """`text` with every encoding of the secret, and every run of RUN of its characters, replaced by MARKER."""
        pieces, position = [], 0
        for start, end in self.spans(text):
            pieces += [text[position:start], MARKER]
            position = end
        return "".join(pieces) + text[position:]


def redact(text: str, secret: Secret | str) -> str:
    """`text` with every encoding of `secret`, and every run of RUN of its characters, replaced by MARKER."""
    return Redactor(secret)(text)


def redact_all(text: str, secrets: list[str]) -> str:
    """`text` with each of `secrets` redacted."""
    for secret in secrets:
        text = Redactor(secret)(text)
    return text


def _stride_pieces(secret: str) -> set[str]:
    """Pieces of each form of the secret, one every RUN characters: any run of 2 * RUN holds one."""
    return {form[i : i + RUN] for form in encoded_forms(secret) for i in range(0, max(len(form) - RUN, 0) + 1, RUN)}


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """What Django's error page and error e-mails show of a request and its frames, with DEBUG on too.

    Django's own filter does nothing while DEBUG is on (the default of `make run`). This one always
    applies `sensitive_variables` and `sensitive_post_parameters`, and also cleanses any variable,
    POST field or dict entry whose name sounds secret, and any variable whose value shows a key in
    reach (see portal.crypto.secrets_in_reach): a rendered config, an Authorization header, a body.
    """

    sensitive_names = re.compile(r"secret|key|token|passw|credential|authoriz|plaintext|cookie", re.IGNORECASE)

    def is_active(self, request) -> bool:
        return True

    def cleanse_setting(self, key, value):
        """Also the password in a URL-shaped setting or environment variable (EMAIL_URL, DATABASE_URL, a cache's
        LOCATION), which Django's names (API, TOKEN, KEY, SECRET, PASS, SIGNATURE) do not catch."""
        value = super().cleanse_setting(key, value)
        if type(value) is str:  # not a lazy object that only says it is one
            value = hide_url_passwords(value, self.cleansed_substitute)
        return value

    def _cleanse_entries(self, value):
        if isinstance(value, dict) and not isinstance(value, MultiValueDict):  # those are cleansed above
            return {
                name: self.cleansed_substitute
                if isinstance(name, str) and self.sensitive_names.search(name)
                else self._cleanse_entries(item)
                for name, item in value.items()
            }
        if isinstance(value, BaseContext):  # a template's context prints every dict it holds
            return [self._cleanse_entries(layer) for layer in getattr(value, "dicts", [])]
        if isinstance(value, BaseSerializer):  # its repr quotes the data it was given (a key typed in, say)
            data = getattr(value, "initial_data", None)
            return f"<{type(value).__name__}(data={pprint(self._cleanse_entries(data))})>"
        return value

    def get_cleansed_multivaluedict(self, request, multivaluedict):
        multivaluedict = super().get_cleansed_multivaluedict(request, multivaluedict).copy()
        for name in multivaluedict:
            if self.sensitive_names.search(name):
                multivaluedict[name] = self.cleansed_substitute
        return multivaluedict

    def get_post_parameters(self, request):
        if request is None:
            return {}
        return self.get_cleansed_multivaluedict(request, super().get_post_parameters(request))

    def get_traceback_frame_variables(self, request, tb_frame):
        pieces = {piece for secret in secrets_in_reach() for piece in _stride_pieces(secret)}
        cleansed = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            if self.sensitive_names.search(name):
                value = self.cleansed_substitute
            else:
                value = self._cleanse_entries(value)
                shown = pprint(value)[:8192]  # the page shows at most 4096 characters of one
                if any(piece in shown for piece in pieces):
                    value = self.cleansed_substitute
            cleansed.append((name, value))
        return cleansed


class SecretSafeExceptionReporter(ExceptionReporter):
    """Django's error page, with every key in reach redacted from the whole text as a last net.

    The exception's own message and the page's code excerpts are not frame variables, so the filter
    above cannot reach them; a library that quotes a header value in its message would show it.
    """

    def get_traceback_data(self) -> dict:
        data = super().get_traceback_data()
        if secrets_in_reach():
            data["unicode_hint"] = ""  # a few characters around an encoding error, perhaps of a key
        return data

    def get_traceback_html(self) -> SafeString:
        # Django's rendered page with plain-text markers in place of keys: as safe as it was.
        return mark_safe(redact_all(super().get_traceback_html(), secrets_in_reach()))  # noqa: S308

    def get_traceback_text(self) -> SafeString:
        return mark_safe(redact_all(super().get_traceback_text(), secrets_in_reach()))  # noqa: S308


def install_log_redaction() -> None:
    """Make every log record redact the keys in reach from its message and traceback as it is created.

    A handler-level filter would not do: records reach handlers added later (a test's caplog, a
    deployment's own) before or without it.
    """
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacts_secrets", False):
        return

    def make_redacted_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        secrets = secrets_in_reach()
        if secrets:
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: logging reports it later, as it always does
                return record
            record.msg, record.args = redact_all(message, secrets), ()
            if record.exc_info and not record.exc_text:
                record.exc_text = redact_all(logging.Formatter().formatException(record.exc_info), secrets)
            if record.stack_info:
                record.stack_info = redact_all(record.stack_info, secrets)
        return record

    make_redacted_record.redacts_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_redacted_record)
