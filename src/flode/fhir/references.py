"""References between the entries of a transaction Bundle
(https://hl7.org/fhir/R4/http.html#trules, https://hl7.org/fhir/R4/bundle.html#references).

Pure: finding the references a resource holds and rewriting them. Which reference becomes what
is decided by the caller, which hands over a finished mapping.

A reference is the string value of any `reference` property, at any depth: `Reference` in
backbone elements, extensions and contained resources alike. No other FHIR element of that name
holds a string, so no type information is needed to find them. Links in the narrative
(`<a href="…">`, `<img src="…">`) are rewritten too, as the specification asks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

# The placeholders a client gives to resources it creates: they name nothing on any server.
PLACEHOLDER_PREFIXES = ("urn:uuid:", "urn:oid:")
# `Patient?identifier=sys|123`: a conditional reference (http.html#trules).
_CONDITIONAL = re.compile(r"^([A-Z][A-Za-z]{1,63})\?(.+)$", re.DOTALL)
_LINK = re.compile(r"""\b(href|src)=(["'])(.*?)\2""", re.DOTALL)


def is_placeholder(reference: str) -> bool:
    return reference.startswith(PLACEHOLDER_PREFIXES)


def conditional(reference: str) -> tuple[str, str] | None:
    """The resource type and search query of a conditional reference, or None."""
    match = _CONDITIONAL.match(reference)
    return None if match is None else (match[1], match[2])


def references(node: Any) -> Iterator[str]:
    """Every reference string in `node` (a resource, or any JSON inside one)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "reference" and isinstance(value, str):
                    yield value
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(child for child in item if isinstance(child, dict | list))


def rewrite(node: Any, replacements: Mapping[str, str]) -> Any:
    """A copy of `node` with every reference and narrative link found in `replacements`
    replaced; everything else is shared with `node`, which is left unchanged."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if isinstance(value, str):
                if key == "reference":
                    value = replacements.get(value, value)
                elif key == "div":
                    value = _rewrite_links(value, replacements)
            elif isinstance(value, dict | list):
                value = rewrite(value, replacements)
            out[key] = value
        return out
    if isinstance(node, list):
        return [rewrite(item, replacements) for item in node]
    return node


def rewrite_in_place(node: Any, replacements: Mapping[str, str], found: list[str]) -> None:
    """What `rewrite(node, replacements)` returns, made of `node` itself (for JSON its caller
    owns and no longer needs as it was), appending every reference of the result to `found`
    in document order: one walk where `rewrite` and `references` take two, and no copies."""
    items = node.items() if type(node) is dict else enumerate(node)
    for key, value in items:
        kind = type(value)
        if kind is dict or kind is list:
            rewrite_in_place(value, replacements, found)
        elif kind is str and type(node) is dict:
            if key == "reference":
                value = node[key] = replacements.get(value, value)
                found.append(value)
            elif key == "div":
                node[key] = _rewrite_links(value, replacements)


def _rewrite_links(xhtml: str, replacements: Mapping[str, str]) -> str:
    if "href" not in xhtml and "src" not in xhtml:
        return xhtml

    def replace(match: re.Match[str]) -> str:
        target = replacements.get(match[3])
        return match[0] if target is None else f"{match[1]}={match[2]}{target}{match[2]}"

    return _LINK.sub(replace, xhtml)


def rewrite_params(
    params: Sequence[tuple[str, str]], replacements: Mapping[str, str]
) -> list[tuple[str, str]]:
    """Search parameters with each value (or comma-separated part of one) that names an entry of
    the Bundle replaced, e.g. `subject=urn:uuid:…` → `subject=Patient/123`."""
    out = []
    for name, value in params:
        if replacements:
            value = ",".join(replacements.get(part, part) for part in value.split(","))
        out.append((name, value))
    return out
