"""Text handling shared by search: string normalisation and FHIR search-value escaping.

Strings are compared case- and accent-insensitively (https://hl7.org/fhir/R4/search.html#string),
which Flöde does in Python at write time: no `unaccent` extension is available on managed
PostgreSQL services or in the embedded server.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Letters that carry their mark in the letter itself, so NFKD leaves them whole.
_FOLD = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ł": "l", "ð": "d", "þ": "th"})
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=8192)
def normalise(text: str) -> str:
    """`text` case-folded, accents stripped and white space collapsed: "Östersund" → "ostersund".

    Cached: one resource indexes the same names under several parameters, and names repeat."""
    if text.isascii():
        return _SPACE.sub(" ", text.lower()).strip()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACE.sub(" ", stripped.translate(_FOLD)).strip()


def split_escaped(text: str, separator: str) -> list[str]:
    """`text` split at every `separator` (`,` `|` or `$`) not escaped with a backslash
    (https://hl7.org/fhir/R4/search.html#escaping). The parts keep their escapes, so a part
    can be split again at the next level; `unescape` each part once it is final."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    """`text` with `\\,` `\\|` `\\$` and `\\\\` turned into the characters they stand for."""
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)
