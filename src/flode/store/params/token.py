"""Token search parameters (https://hl7.org/fhir/R4/search.html#token).

Index rows live in `search_token` as (system, code, text, type_system, type_code): `text` is the
normalised CodeableConcept.text / Coding.display for `:text`; an Identifier with a type carries
each type coding in `type_system`, `type_code` for `:of-type`. Every token query form
(`code`, `system|code`, `|code`, `system|`) is one lookup on `(resource_type, param, code, system)`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from flode.fhir.errors import bad_request
from flode.store.params.common import Node, exists, like_escape, missing
from flode.store.sql import Args
from flode.text import normalise, split_escaped, unescape

TABLE = "search_token"
COLUMNS = ("system", "code", "text", "type_system", "type_code")
# A btree index row holds at most about 2.7 kB. A longer system or code is indexed, and searched
# for, by its digest instead, so matching stays exact.
MAX_INDEXED_BYTES = 512
# A text of at most this many characters is at most MAX_INDEXED_BYTES in UTF-8.
_SHORT = MAX_INDEXED_BYTES // 4
UNSUPPORTED = ("in", "not-in", "below", "above")

TokenRow = tuple[str | None, str | None, str | None, str | None, str | None]
"""(system, code, text, type_system, type_code) as stored in `search_token`."""


def indexed(text: str) -> str:
    """The form of a system or code in `search_token`."""
    if len(text) <= _SHORT:
        return text  # fits whatever its characters (hot: most values are short)
    raw = text.encode()
    return text if len(raw) <= MAX_INDEXED_BYTES else f"sha256:{hashlib.sha256(raw).hexdigest()}"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _text(value: Any) -> str | None:
    text = _str(value)
    return normalise(text) if text is not None else None


def _coding(coding: Any) -> TokenRow | None:
    if not isinstance(coding, dict):
        return None
    system, code = _str(coding.get("system")), _str(coding.get("code"))
    text = _text(coding.get("display"))
    if code is None and text is None:
        return None
    return (
        indexed(system) if system else None,
        indexed(code) if code else None,
        text,
        None,
        None,
    )


def _codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    return [c for c in concept["coding"] if isinstance(c, dict)]


def _identifier(identifier: Any) -> list[TokenRow]:
    if not isinstance(identifier, dict) or _str(identifier.get("value")) is None:
        return []
    system = _str(identifier.get("system"))
    base = (indexed(system) if system else None, indexed(identifier["value"]))
    kind = identifier.get("type")
    text = _text(kind.get("text")) if isinstance(kind, dict) else None
    types = [
        (indexed(t["system"]) if _str(t.get("system")) else None, indexed(t["code"]))
        for t in _codings(kind)
        if _str(t.get("code"))
    ]
    if not types:
        return [(*base, text, None, None)]
    return [(*base, text, type_system, type_code) for type_system, type_code in types]


def rows(nodes: Iterable[Node]) -> list[TokenRow]:
    """The `search_token` rows of a token parameter's values (search.html#token, the table of
    element types)."""
    if not nodes:
        return []
    found: list[TokenRow] = []
    for kind, value in nodes:
        if kind == "Coding":
            row = _coding(value)
            found.extend([row] if row else [])
        elif kind == "CodeableConcept":
            found.extend(row for c in _codings(value) if (row := _coding(c)))
            text = _text(value.get("text")) if isinstance(value, dict) else None
            if text:
                found.append((None, None, text, None, None))
        elif kind == "Identifier":
            found.extend(_identifier(value))
        elif kind == "ContactPoint":
            if isinstance(value, dict) and _str(value.get("value")):
                found.append((None, indexed(value["value"]), None, None, None))
        elif kind == "boolean" and isinstance(value, bool):
            found.append((None, "true" if value else "false", None, None, None))
        elif isinstance(value, str) and value:  # code, id, string, uri, canonical …
            found.append((None, indexed(value), None, None, None))
    return list(dict.fromkeys(found))


def match(param: str, value: str, args: Args, columns: str = "i.system i.code") -> str:
    """The condition over `i` for `code`, `system|code`, `|code` or `system|`; `columns` names
    the row's system and code columns."""
    i_system, i_code = columns.split()
    parts = split_escaped(value, "|")
    if len(parts) > 2:
        raise bad_request(f"Too many '|' in '{value}' in search parameter '{param}'", param)
    if len(parts) == 1:
        code = unescape(parts[0])
        if not code:
            raise bad_request(f"Empty value in search parameter '{param}'", param)
        return f"{i_code} = {args.add(indexed(code))}"
    system, code = unescape(parts[0]), unescape(parts[1])
    if not system and not code:
        raise bad_request(f"Empty value in search parameter '{param}'", param)
    if not system:
        return f"({i_system} IS NULL AND {i_code} = {args.add(indexed(code))})"
    if not code:
        return f"{i_system} = {args.add(indexed(system))}"
    return f"({i_system} = {args.add(indexed(system))} AND {i_code} = {args.add(indexed(code))})"


def _of_type(param: str, value: str, args: Args) -> str:
    parts = [unescape(p) for p in split_escaped(value, "|")]
    if len(parts) != 3 or not all(parts):
        raise bad_request(
            f"'{param}:of-type' takes type-system|type-code|value, not '{value}'", param
        )
    type_system, type_code, code = (indexed(p) for p in parts)
    return (
        f"(i.type_system = {args.add(type_system)} AND i.type_code = {args.add(type_code)} "
        f"AND i.code = {args.add(code)})"
    )


def _text_match(param: str, value: str, args: Args) -> str:
    """`:text`: "processed as a string" (search.html#modifiers): the normalised text equals or
    starts with the value, as a string parameter matches."""
    text = normalise(unescape(value))
    if not text:
        raise bad_request(f"Empty value in search parameter '{param}:text'", param)
    return f"i.text LIKE {args.add(like_escape(text) + '%')}"


def condition(param: str, modifier: str | None, value: str, args: Args) -> str:
    """The condition over index row `i` that one value (of a possibly modified parameter)
    stands for; `:not` is the negation of the unmodified condition, applied by the caller."""
    if modifier in UNSUPPORTED:
        raise bad_request(f"The modifier ':{modifier}' is not supported ('{param}')", param)
    if modifier in (None, "not"):
        return match(param, value, args)
    if modifier == "text":
        return _text_match(param, value, args)
    if modifier == "of-type":
        return _of_type(param, value, args)
    raise bad_request(f"Unknown modifier ':{modifier}' on token parameter '{param}'", param)


def search(param: str, modifier: str | None, raw: str, args: Args) -> str:
    """SQL over `resource r` for a whole parameter value: any of its comma-separated values,
    `:missing`, and `:not` (none of the values)."""
    if modifier == "missing":
        return missing(TABLE, param, raw, args)
    values = split_escaped(raw, ",")
    conditions = [condition(param, modifier, value, args) for value in values]
    found = exists(TABLE, param, " OR ".join(conditions), args)
    return f"NOT {found}" if modifier == "not" else found
