"""Redaction: take every encoding of a secret out of a text before anything stores or shows it.

A gateway that echoes a key rarely echoes it verbatim: JSON escapes its quotes and slashes, a
URL percent-encodes it, an auth header travels base64-encoded, an HTML page escapes it. So
`redact()` removes every run of at least `RUN` consecutive characters of the secret, found in
the text as it is, in the text with its escapes decoded (JSON, percent, HTML; twice, for an escape
of an escape), and in the exact escaped and base64 forms of the secret. Pure: text in, text out.
"""

from __future__ import annotations

import base64
import html
import json
import re
from urllib.parse import quote, quote_plus

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


def _decode(text: str) -> tuple[str, Spans]:
    """The text with one level of escapes decoded, and for each decoded character its span in `text`."""
    chars: list[str] = []
    spans: Spans = []
    position = 0
    for match in _ESCAPE.finditer(text):
        for index in range(position, match.start()):
            chars.append(text[index])
            spans.append((index, index + 1))
        decoded = _unescape(match.group())
        if len(decoded) == 1:
            chars.append(decoded)
            spans.append(match.span())
        else:  # an unknown entity such as &nbsp1; stays as written
            for index in range(match.start(), match.end()):
                chars.append(text[index])
                spans.append((index, index + 1))
        position = match.end()
    for index in range(position, len(text)):
        chars.append(text[index])
        spans.append((index, index + 1))
    return "".join(chars), spans


def _runs(text: str, needle: str) -> Spans:
    """Where `text` holds RUN or more consecutive characters of `needle` (all of it, if shorter)."""
    if not needle:
        return []
    if len(needle) < RUN:
        return [match.span() for match in re.finditer(re.escape(needle), text)]
    grams = {needle[i : i + RUN] for i in range(len(needle) - RUN + 1)}
    return [(i, i + RUN) for i in range(len(text) - RUN + 1) if text[i : i + RUN] in grams]


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


def secret_spans(text: str, secret: str) -> Spans:
    """The merged spans of `text` that hold some encoding of the secret."""
    if not secret or not text:
        return []
    found = [span for form in encoded_forms(secret) for span in _runs(text, form)]
    decoded, spans = text, [(i, i + 1) for i in range(len(text))]
    for _ in range(2):
        decoded, inner = _decode(decoded)
        spans = [(spans[start][0], spans[end - 1][1]) for start, end in inner]
        found += [(spans[start][0], spans[end - 1][1]) for start, end in _runs(decoded, secret)]
    merged: Spans = []
    for start, end in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def redact(text: str, secret: str) -> str:
    """`text` with every encoding of `secret`, and every run of RUN of its characters, replaced by MARKER."""
    pieces, position = [], 0
    for start, end in secret_spans(text, secret):
        pieces += [text[position:start], MARKER]
        position = end
    return "".join(pieces) + text[position:]
