"""Reading page numbers and positions from a query string, for the pages and the API alike.

`str.isdigit()` is true for superscripts such as "²", which `int()` refuses, and a number such as
10**24 does not fit a database integer: both used to end in a 500. A value is accepted only as
plain ASCII digits within a bound; anything else is None and the caller says so or starts over.
"""

from __future__ import annotations

# The largest id or position a query may name: the biggest value a 64-bit database integer holds.
MAX_POSITION = 2**63 - 1
# The deepest page a listing offers; at 100 rows a page that is 100 million rows, far past any table here.
MAX_PAGE = 1_000_000


def query_number(raw: str | None, *, maximum: int, minimum: int = 1) -> int | None:
    """A whole number from minimum to maximum written in ASCII digits (an optional leading '-'), or None."""
    text = (raw or "").strip()
    digits = text.removeprefix("-")
    if not digits or not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(maximum)):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None
