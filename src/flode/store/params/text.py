"""Full-text search: `_text` (the narrative) and `_content` (the whole resource)
(https://hl7.org/fhir/R4/search.html#_text, #_content).

One `search_text` row per resource holds two `tsvector`s: `narrative`, the words of `text.div`
with its XHTML tags stripped, and `content`, the words of every string, markdown and code value
at any depth (Coding.display, CodeableConcept.text, notes, names, extensions, contained
resources, the narrative too). Words are made in Python, the same way at write and at query
time: normalised like string search ("Östersund" → "ostersund": no `unaccent` in the embedded
server or on managed services), split into runs of letters and digits, each cut to `MAX_WORD`
characters, and stored as lexemes without positions (`array_to_tsvector`), so PostgreSQL's own
parser and dictionaries play no part. GIN indexes on both columns answer `@@`.

A search value is words: `hjärtsvikt ödem` needs both (AND), `bone OR liver` either,
parentheses group (`(bone OR liver) and metastases`, the specification's example), a final `*`
matches a word prefix (`hjärt*`), and a quoted phrase needs all its words (no positions are
kept, so not their order). Comma-separated values are ORed as everywhere.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from flode.fhir.definitions import Definitions
from flode.fhir.errors import bad_request
from flode.store.sql import Args
from flode.text import normalise, split_escaped, unescape

TABLE = "search_text"
COLUMN_OF: Mapping[str, str] = {"_text": "narrative", "_content": "content"}
PARAMS = frozenset(COLUMN_OF)
MAX_WORD = 100
# A tsvector holds at most 1 MB; what a resource has beyond this budget is not indexed.
MAX_BYTES = 1_000_000
# Bytes PostgreSQL spends per lexeme besides its text (WordEntry; rounding to even sizes).
_LEXEME_OVERHEAD = 6

TextRow = tuple[list[str] | None, list[str] | None]
"""(narrative words, content words) as stored in `search_text`; None when there are none. A
word is never empty and never holds a space (flode.load.fast stages words joined by spaces)."""

_WORD = re.compile(r"\w+")
# ASCII characters that are not word characters (`\w`): text is split at them as at spaces,
# by `translate` and `split`, several times faster than a regular expression.
_ASCII_NON_WORD = bytes(c for c in range(128) if not (chr(c).isalnum() or chr(c) == "_"))
_STR_SPACES = str.maketrans(dict.fromkeys(_ASCII_NON_WORD.decode(), " "))
_BYTE_SPACES = bytes.maketrans(_ASCII_NON_WORD, b" " * len(_ASCII_NON_WORD))
_TAG = re.compile(r"<[^>]*>")
_QUERY_TOKEN = re.compile(r'[()"]|[^\s()"]+')

# How a property's value is read: text, XHTML, a whole resource, or an object of a node.
_TEXT, _XHTML, _RESOURCE, _OBJECT = range(4)
_TEXT_TYPES = frozenset({"string", "markdown", "code"})
# Strings that hold no words a person wrote: element ids, references, a narrative's status.
_SKIPPED = frozenset({("*", "id"), ("Reference", "reference"), ("Narrative", "status")})


def narrative_text(div: str) -> str:
    """The text of an XHTML narrative: tags replaced by spaces, entities resolved."""
    return html.unescape(_TAG.sub(" ", div))


@lru_cache(maxsize=16384)
def fold(chunk: str) -> tuple[str, ...]:
    """A chunk of text with non-ASCII characters as search words: normalised like string
    search (case-folded, accents stripped) and split at what is not a word character (a
    no-break space, `–`, `½` → `1⁄2`). Cached: words repeat."""
    return tuple(_WORD.findall(normalise(chunk)))


def split(text: str) -> list[str]:
    """The search words of `text` in order: split at white space and ASCII punctuation, lower
    cased, chunks with other characters folded. Queries are split so; the indexed words are the
    same, made faster by `_distinct`."""
    if text.isascii():
        return text.lower().translate(_STR_SPACES).split()
    found: list[str] = []
    for chunk in unicodedata.normalize("NFC", text).lower().translate(_STR_SPACES).split():
        found.extend((chunk,) if chunk.isascii() else fold(chunk))
    return found


def _distinct(text: str) -> dict[str, None]:
    """`split(text)` without repetitions, in any order."""
    if text.isascii():
        return dict.fromkeys(text.lower().translate(_STR_SPACES).split())
    # Bytes: `translate` on a non-ASCII str looks every character up in a dict.
    data = unicodedata.normalize("NFC", text).lower().encode().translate(_BYTE_SPACES)
    chunks = dict.fromkeys(data.split())
    if not chunks:
        return {}
    found = dict.fromkeys(b" ".join(chunks).decode().split(" "))
    for chunk in [chunk for chunk in found if not chunk.isascii()]:
        del found[chunk]
        found.update(dict.fromkeys(fold(chunk)))
    return found


def _bounded(found: Iterable[str]) -> list[str]:
    """Words cut to `MAX_WORD` characters, as many as fit a `tsvector`."""
    kept = list(found)
    if max(map(len, kept), default=0) > MAX_WORD:
        kept = list(dict.fromkeys(word[:MAX_WORD] for word in kept))
    # 4 bytes per character bound UTF-8: only a huge resource needs measuring.
    if sum(map(len, kept)) * 4 + len(kept) * _LEXEME_OVERHEAD <= MAX_BYTES:
        return kept
    size = 0
    for count, word in enumerate(kept):
        size += len(word.encode()) + _LEXEME_OVERHEAD
        if size > MAX_BYTES:
            return kept[:count]
    return kept


def words(texts: Iterable[str]) -> list[str]:
    """The distinct search words of `texts`: runs of letters and digits, normalised like
    string search, cut to `MAX_WORD` characters, within the size of a `tsvector`."""
    return _bounded(_distinct("\n".join(texts)))


class Extractor:
    """The `search_text` row of a resource, walking it by its structure definition: only
    elements whose type is string, markdown, code or xhtml contribute (not ids, URIs, dates,
    binary data or references)."""

    def __init__(self, definitions: Definitions) -> None:
        self.definitions = definitions
        self._plans: dict[str, dict[str, tuple[int, str]]] = {}

    def row(self, resource: Mapping[str, Any], *, narrative: bool) -> TextRow | None:
        """`narrative`: whether the type has one (`_text` is defined on DomainResource only)."""
        text = resource.get("text") if narrative else None
        div = text.get("div") if isinstance(text, dict) else None
        texts: list[str] = []
        if isinstance(div, str):
            # Its words serve both columns; the walk reads the rest of the resource.
            found = _distinct(narrative_text(div))
            narrative_words = _bounded(found)
            self._texts(resource["resourceType"], {**resource, "text": {}}, texts)
            found.update(_distinct("\n".join(texts)))
            content_words = _bounded(found)
        else:
            narrative_words = []
            self._texts(resource["resourceType"], resource, texts)
            content_words = words(texts)
        if not narrative_words and not content_words:
            return None
        return narrative_words or None, content_words or None

    def _texts(self, node: str, value: Mapping[str, Any], found: list[str]) -> None:
        """Appends the texts of `value`, an object of `node`, to `found`. (Hot: written for
        speed, with exact type checks.)"""
        plan = self._plans.get(node)
        if plan is None:
            plan = self._plans[node] = self._plan(node)
        for key, item in value.items():
            step = plan.get(key)
            if step is None:
                continue
            kind, child = step
            if kind == _TEXT:
                if type(item) is str:
                    found.append(item)
                elif type(item) is list:
                    found.extend([element for element in item if type(element) is str])
            elif kind == _OBJECT:
                if type(item) is dict:
                    self._texts(child, item, found)
                elif type(item) is list:
                    for element in item:
                        if type(element) is dict:
                            self._texts(child, element, found)
            else:
                for element in item if type(item) is list else (item,):
                    if kind == _XHTML:
                        if type(element) is str:
                            found.append(narrative_text(element))
                    elif type(element) is dict and type(element.get("resourceType")) is str:
                        self._texts(element["resourceType"], element, found)

    def _plan(self, node: str) -> dict[str, tuple[int, str]]:
        """How to read each JSON property of `node` that can hold words."""
        found = self.definitions.nodes.get(node)
        if found is None:
            return {}
        plan: dict[str, tuple[int, str]] = {}
        for name, prop in found.properties.items():
            if ("*", name) in _SKIPPED or (node, name) in _SKIPPED:
                continue
            if prop.type in _TEXT_TYPES:
                plan[name] = (_TEXT, "")
            elif prop.type == "xhtml":
                plan[name] = (_XHTML, "")
            elif prop.type == "Resource":
                plan[name] = (_RESOURCE, "")
            elif prop.type not in self.definitions.primitives:
                plan[name] = (_OBJECT, prop.node)
        return plan


def tsquery(param: str, value: str) -> str:
    """One search value as `tsquery` text: words ANDed, `OR` (any case), parentheses, a final
    `*` for a prefix, quoted phrases."""
    tokens = []
    for token in _QUERY_TOKEN.findall(unescape(value)):
        if token.lower() in ("and", "or"):
            tokens.append(token.lower())
        elif token in ("(", ")", '"') or split(token):  # punctuation alone (`-`) is no word
            tokens.append(token)
    if all(token in ("(", ")", '"', "and", "or") for token in tokens):
        raise bad_request(f"Empty value in search parameter '{param}'", param)
    parser = _Parser(param, value, tokens)
    query = parser.expression()
    if parser.position < len(tokens):
        raise parser.malformed()
    return query


class _Parser:
    """expression := all (OR all)* ; all := term ([AND] term)* ;
    term := word | "word…" | ( expression )"""

    def __init__(self, param: str, value: str, tokens: list[str]) -> None:
        self.param, self.value, self.tokens = param, value, tokens
        self.position = 0

    def malformed(self) -> Exception:
        return bad_request(
            f"Malformed text search '{self.value}' in '{self.param}': use words, OR, AND, "
            "parentheses and quotes",
            self.param,
        )

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _next(self) -> str:
        token = self._peek()
        if token is None:
            raise self.malformed()
        self.position += 1
        return token

    def expression(self) -> str:
        alternatives = [self._all()]
        while self._peek() == "or":
            self.position += 1
            alternatives.append(self._all())
        return alternatives[0] if len(alternatives) == 1 else " | ".join(alternatives)

    def _all(self) -> str:
        terms = [self._term()]
        while self._peek() not in (None, ")", "or"):
            if self._peek() == "and":
                self.position += 1
            terms.append(self._term())
        return " & ".join(terms)

    def _term(self) -> str:
        token = self._next()
        if token == "(":
            inner = self.expression()
            if self._next() != ")":
                raise self.malformed()
            return f"({inner})"
        if token == '"':
            phrase = []
            while (word := self._next()) != '"':
                if word not in ("(", ")"):
                    phrase.append(self._lexemes(word))
            if not phrase:
                raise self.malformed()
            return "(" + " & ".join(phrase) + ")"
        if token in (")", "and", "or"):
            raise self.malformed()
        return self._lexemes(token)

    def _lexemes(self, word: str) -> str:
        """A word as quoted tsquery lexemes, folded like indexed words (`x½` is `x1` and `2`);
        a final `*` makes the last a prefix. Words hold no quotes or backslashes."""
        lexemes = [f"'{part[:MAX_WORD]}'" for part in split(word)]
        if word.endswith("*"):
            lexemes[-1] += ":*"
        return lexemes[0] if len(lexemes) == 1 else "(" + " & ".join(lexemes) + ")"


def search(param: str, modifier: str | None, raw: str, args: Args) -> str:
    """SQL over `resource r` for `_text` or `_content`: any of the comma-separated values, or
    `:missing` (no narrative, no text at all)."""
    column = COLUMN_OF[param]
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise bad_request(f"'{param}:missing' takes true or false, not '{raw}'", param)
        found = (
            f"EXISTS (SELECT 1 FROM {TABLE} i WHERE i.resource_pk = r.pk "
            f"AND i.{column} IS NOT NULL)"
        )
        return f"NOT {found}" if raw == "true" else found
    if modifier is not None:
        raise bad_request(f"Unknown modifier ':{modifier}' on '{param}'", param)
    queries = [tsquery(param, value) for value in split_escaped(raw, ",")]
    query = queries[0] if len(queries) == 1 else " | ".join(f"({q})" for q in queries)
    return (
        f"EXISTS (SELECT 1 FROM {TABLE} i WHERE i.resource_pk = r.pk "
        f"AND i.{column} @@ {args.add(query)}::tsquery)"
    )
