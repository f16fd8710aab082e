"""JSON Patch (RFC 6902) over JSON Pointer (RFC 6901), as FHIR's patch interaction uses it
(https://hl7.org/fhir/R4/http.html#patch). Applies to a deep copy; the input is never changed."""

from __future__ import annotations

import copy
from typing import Any

from flode.fhir.errors import FhirError, Issue, bad_request

_OPS = {"add", "remove", "replace", "move", "copy", "test"}


def _unprocessable(index: int, message: str) -> FhirError:
    return FhirError(422, [Issue("error", "processing", f"Patch operation {index}: {message}")])


def _tokens(pointer: Any, index: int) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise bad_request(f"Patch operation {index}: '{pointer}' is not a JSON Pointer")
    if pointer == "":
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _list_index(container: list[Any], token: str, index: int, *, append: bool) -> int:
    if append and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise _unprocessable(index, f"'{token}' is not an array index")
    position = int(token)
    limit = len(container) if append else len(container) - 1
    if position > limit:
        raise _unprocessable(index, f"array index {position} is out of range")
    return position


def _parent(doc: Any, tokens: list[str], index: int) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_list_index(node, token, index, append=False)]
        else:
            raise _unprocessable(index, f"path element '{token}' does not exist")
    return node


def _get(doc: Any, tokens: list[str], index: int) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens, index)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_list_index(parent, last, index, append=False)]
    raise _unprocessable(index, f"path element '{last}' does not exist")


def _remove(doc: Any, tokens: list[str], index: int) -> Any:
    if not tokens:
        raise _unprocessable(index, "cannot remove the whole resource")
    parent = _parent(doc, tokens, index)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_list_index(parent, last, index, append=False))
    raise _unprocessable(index, f"path element '{last}' does not exist")


def _add(doc: Any, tokens: list[str], value: Any, index: int) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens, index)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, last, index, append=True), value)
    else:
        raise _unprocessable(index, f"cannot add below a {type(parent).__name__}")
    return doc


def _equal(a: Any, b: Any) -> bool:
    """JSON equality (RFC 6902 section 4.6): numbers compare by value, but a boolean is never
    equal to a number (as Python's `True == 1` would have it)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def apply_patch(document: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise bad_request("A JSON Patch document must be a JSON array of operations")
    doc = copy.deepcopy(document)
    for index, op in enumerate(operations):
        if not isinstance(op, dict) or op.get("op") not in _OPS:
            raise bad_request(
                f"Patch operation {index} has no valid 'op' ({', '.join(sorted(_OPS))})"
            )
        name = op["op"]
        path = _tokens(op.get("path"), index)
        if name in ("add", "replace", "test") and "value" not in op:
            raise bad_request(f"Patch operation {index} ('{name}') needs a 'value'")
        if name == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]), index)
        elif name == "remove":
            _remove(doc, path, index)
        elif name == "replace":
            _get(doc, path, index)  # the target must exist
            value = copy.deepcopy(op["value"])
            if not path:
                doc = value
            else:
                parent = _parent(doc, path, index)
                if isinstance(parent, dict):
                    parent[path[-1]] = value
                else:
                    parent[_list_index(parent, path[-1], index, append=False)] = value
        elif name in ("move", "copy"):
            source = _tokens(op.get("from"), index)
            if name == "move" and path[: len(source)] == source and path != source:
                raise _unprocessable(index, "cannot move a value into one of its own children")
            value = (
                _remove(doc, source, index)
                if name == "move"
                else copy.deepcopy(_get(doc, source, index))
            )
            doc = _add(doc, path, value, index)
        elif not _equal(_get(doc, path, index), op["value"]):
            raise _unprocessable(index, f"test failed: the value at '{op['path']}' differs")
    return doc
