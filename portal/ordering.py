"""Names in the order people read them: "Émile" between "Emil" and "Erik", "beta" before "Gamma"; and found in any
case, in every alphabet: "ÉLO" finds "élodie", "STRASSE" finds "Straße".

A plain ORDER BY sorts by code point, so capitals come first and every accented letter after z. Lists of names
(teams, keys, gateways, a developer's set-ups) sort by `ReadingOrder(field)` instead:

- on PostgreSQL by the ICU root collation, `und-x-icu` (the Unicode Collation Algorithm's default order),
  which PostgreSQL has when it is built with ICU, as Debian's, the official images and the managed services
  are;
- on SQLite by the collation `reading_order`, which the portal gives each connection as it opens: names
  compare with accents and case set aside first, then with accents, then as typed.

The two agree on names in the Latin, Greek and Cyrillic alphabets (tests/test_names_order_and_addresses.py runs
the same lists on both); elsewhere SQLite's order is by code point once accents and case are set aside. Comparisons
in a keyset cursor (`portal.pagination`) use the same collation, since the expression carries it.

Searches of names people type use the lookup `field__ucontains=text` instead of `icontains`, whose LIKE folds ASCII
letters only on SQLite. It compares both sides in capitals, as Unicode spells them ("ß" is "SS"): on PostgreSQL with
UPPER under the same ICU collation (the database's own libc UPPER leaves "ß" as it is), on SQLite with the function
`unicode_upper`, Python's str.upper, which the portal gives each connection with the collation. So both databases
find the same rows; % _ and \\ in the text match only themselves.
"""

from __future__ import annotations

import functools
import unicodedata

from django.db.models import CharField, Func, TextField
from django.db.models.lookups import Contains, IContains

POSTGRESQL_COLLATION = "und-x-icu"
SQLITE_COLLATION = "reading_order"
SQLITE_UPPER = "unicode_upper"


# Latin letters with a stroke or ligatures, which Unicode does not decompose but the ICU order files under
# their base letters ("Øresund" before "Oslo", "Łódź" before "Lyon", "Æther" before "Afar").
BASE_LETTERS = str.maketrans({"ø": "o", "đ": "d", "ł": "l", "ħ": "h", "ŧ": "t", "æ": "ae", "œ": "oe"})


# Spaces, punctuation and symbols come before digits, and digits before letters, in ICU's root order; the
# ASCII ones in that order's sequence (read from PostgreSQL's und-x-icu), any other by code point after them.
ICU_ASCII_MARKS = " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$"
MARK_RANK = {mark: rank for rank, mark in enumerate(ICU_ASCII_MARKS)}


def _rank(ch: str) -> tuple[int, int]:
    """Where one character of a folded name sorts: marks, then digits, then letters (and other scripts)."""
    if ch.isdigit():
        return 2, ord(ch)
    if ch.isalpha():
        return 3, ord(ch)
    return (0, MARK_RANK[ch]) if ch in MARK_RANK else (1, ord(ch))


@functools.lru_cache(maxsize=4096)
def reading_key(text: str) -> tuple[tuple[tuple[int, int], ...], str, str]:
    """What `text` sorts by on SQLite: its characters without accents or case (marks before digits before
    letters), then with accents, then as typed with lower case first ("web", "Web", "WEB"), as ICU's order has
    them."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    base = "".join(ch for ch in folded if not unicodedata.combining(ch)).translate(BASE_LETTERS)
    return tuple(_rank(ch) for ch in base), folded, text.swapcase()


def compare_for_reading(left: str, right: str) -> int:
    """SQLite's collation callback: negative, zero or positive as `left` sorts before, with or after `right`."""
    a, b = reading_key(left), reading_key(right)
    return (a > b) - (a < b)


def unicode_upper(text: str | None) -> str | None:
    """SQLite's `unicode_upper(text)`: its UPPER and LIKE change the case of ASCII letters only."""
    return None if text is None else str(text).upper()


def add_sqlite_collation(sender, connection, **kwargs) -> None:
    """connection_created receiver: give a new SQLite connection the `reading_order` collation, and the
    `unicode_upper` function that searches in any case use."""
    if connection.vendor == "sqlite":
        connection.connection.create_collation(SQLITE_COLLATION, compare_for_reading)
        connection.connection.create_function(SQLITE_UPPER, 1, unicode_upper, deterministic=True)


class ReadingOrder(Func):
    """`field` with the collation that sorts it as people read (see the module's docstring)."""

    output_field = CharField()

    def as_sql(self, compiler, connection, function=None, template=None, arg_joiner=None, **extra_context):
        collation = {"postgresql": POSTGRESQL_COLLATION, "sqlite": SQLITE_COLLATION}.get(connection.vendor)
        if collation is None:
            return compiler.compile(self.source_expressions[0])
        template = f"%(expressions)s COLLATE {connection.ops.quote_name(collation)}"
        return super().as_sql(compiler, connection, template=template, **extra_context)


@CharField.register_lookup
@TextField.register_lookup
class UnicodeContains(Contains):
    """`field__ucontains=text`: the field holds `text`, case aside in every alphabet (see the module's docstring).
    For text people type, not for another column (the pattern is built from a value)."""

    lookup_name = "ucontains"

    def as_sql(self, compiler, connection):
        if connection.vendor not in ("postgresql", "sqlite"):
            return IContains(self.lhs, self.rhs).as_sql(compiler, connection)
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        rhs_sql, rhs_params = self.process_rhs(compiler, connection)  # the text between %, its % _ and \ escaped
        lhs, rhs = in_capitals(lhs_sql, connection), in_capitals(rhs_sql, connection)
        return f"{lhs} LIKE {rhs} ESCAPE '\\'", [*lhs_params, *rhs_params]


def in_capitals(sql: str, connection) -> str:
    """`sql` in capitals as Unicode spells them, the same on both databases (see the module's docstring)."""
    if connection.vendor == "postgresql":
        return f"UPPER(({sql})::text COLLATE {connection.ops.quote_name(POSTGRESQL_COLLATION)})"
    return f"{SQLITE_UPPER}({sql})"
