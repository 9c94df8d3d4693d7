"""Names people type and everyone reads (a team's name, a key's label): one rule for whether a name shows as typed.

Pure, like portal.errors: the gateways' rules apply it to key labels, the team services to team names.
"""

from __future__ import annotations

import unicodedata

from portal.errors import RuleError

# Characters that reorder the text around them: a name holding one reads differently from what it is.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Control characters and the Unicode line and paragraph separators: each breaks the one line a name is shown on.
LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})
# What draws nothing by itself: format characters (zero-width space, joiners), combining marks (drawn on a
# neighbour, so a name of them alone has none), spaces, and the letters that are blanks (Hangul fillers, the
# empty Braille pattern).
UNSEEN_CATEGORIES = frozenset({"Cf", "Mn", "Me", "Mc", "Zs"})
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_unseen(ch: str) -> bool:
    """True for a character that draws nothing on its own."""
    return ch in BLANK_LETTERS or unicodedata.category(ch) in UNSEEN_CATEGORIES


def clean_name(name: str, *, what: str, field: str, empty: str, max_length: int) -> str:
    """`name` as pages, exports, scripts and mail show it: stripped, one line of visible text, in NFC.

    NFC gives a name one spelling ("Café" typed precomposed or with a combining accent), so a uniqueness
    check compares what people see. `what` names it in a sentence ("team name"); `empty` is the sentence
    for a blank one.
    """
    name = unicodedata.normalize("NFC", name.strip())
    if not name:
        raise RuleError(empty, field=field)
    if any(unicodedata.category(ch) in LINE_BREAKING or ch in BIDI_CONTROLS for ch in name):
        raise RuleError(
            f"The {what} must be one line of text, without line breaks, control characters or characters "
            "that reverse the text's direction.",
            field=field,
        )
    if all(is_unseen(ch) for ch in name):
        raise RuleError(
            f"The {what} shows as a blank: it holds only spaces, zero-width or combining characters. "
            "Use at least one visible letter, digit or sign.",
            field=field,
        )
    if len(name) > max_length:  # NFC can lengthen a name a form or the API let through at the limit
        raise RuleError(f"The {what} must be at most {max_length} characters long.", field=field)
    return name


# A user name is part of page and API addresses (/teams/web/members/<name>/remove/); "." and ".." there are
# folders to a browser, which drops them, so a name of only dots would send its links elsewhere.
DOTS_ONLY_USERNAME = (
    "A user name of only dots cannot be part of a page's address: a browser reads . and .. as folders. "
    "Add a letter or a digit."
)


def is_only_dots(username: str) -> bool:
    """True for a user name that is nothing but dots ("." or "..", which addresses cannot carry)."""
    return bool(username) and not username.strip(".")
