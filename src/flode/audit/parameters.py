"""The inputs of the log review operations (`$review-sample`, `$review-result`,
`$review-results`): the URL's parameters and a `Parameters` body together
(https://hl7.org/fhir/R4/operations.html#request), by name.

A value is read as text whatever its type: a string, code, id, uri, dateTime or integer as
itself, a Reference as its `reference`, an Identifier as its `value`, a Coding as its `code`.
A parameter with `part`s (the `sample` of a review result) is read as parameters of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from flode.fhir.errors import bad_request


def _text(name: str, value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("reference", value.get("value", value.get("code")))
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"Parameter '{name}' needs a value", name)
    return value.strip()


def _pairs(parameters: Any, where: str) -> list[tuple[str, Any]]:
    """(name, value[x] or the list of parts) of each parameter of a `parameter` list."""
    if not isinstance(parameters, list):
        raise bad_request(f"{where} must be a list", where)
    found: list[tuple[str, Any]] = []
    for parameter in parameters:
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if not isinstance(name, str):
            raise bad_request("Every parameter needs a name", where)
        assert isinstance(parameter, dict)
        values = [k for k in parameter if k.startswith("value") or k == "part"]
        if len(values) != 1:
            raise bad_request(f"Parameter '{name}' needs exactly one value[x] or its parts", name)
        found.append((name, parameter[values[0]]))
    return found


class Given:
    """The parameters of one call of `operation`: each name one of `single` (at most once) or
    `repeated`; anything else is a 400."""

    def __init__(
        self,
        operation: str,
        pairs: Sequence[tuple[str, Any]],
        single: Iterable[str],
        repeated: Iterable[str] = (),
    ) -> None:
        self.operation = operation
        single, repeated = set(single), set(repeated)
        self._values: dict[str, list[Any]] = {}
        for name, value in pairs:
            if name not in single | repeated:
                known = ", ".join(sorted(single | repeated))
                raise bad_request(f"{operation} takes {known}; not '{name}'", name)
            self._values.setdefault(name, []).append(value)
        for name, values in self._values.items():
            if name in single and len(values) > 1:
                raise bad_request(f"Parameter '{name}' of {operation} may be given once", name)

    def text(self, name: str) -> str | None:
        values = self._values.get(name)
        return None if not values else _text(name, values[0])

    def required(self, name: str, what: str) -> str:
        found = self.text(name)
        if found is None:
            raise bad_request(f"{self.operation} needs '{name}' ({what})", name)
        return found

    def texts(self, name: str) -> list[str]:
        """Every value of a repeated parameter; a URL's value is also split at commas."""
        found: list[str] = []
        for value in self._values.get(name, []):
            text = _text(name, value)
            found += [part.strip() for part in text.split(",")] if "," in text else [text]
        if any(not part for part in found):
            raise bad_request(f"Parameter '{name}' has an empty value", name)
        return found

    def number(self, name: str) -> int | None:
        text = self.text(name)
        if text is None:
            return None
        if not text.isdigit() or len(text) > 9:
            raise bad_request(f"Parameter '{name}' needs a whole number, not '{text}'", name)
        return int(text)

    def parts(self, name: str, single: Iterable[str], repeated: Iterable[str] = ()) -> Given:
        """The parts of a parameter given once, as parameters of their own."""
        values = self._values.get(name, [])
        if not values:
            return Given(self.operation, [], single, repeated)
        if not isinstance(values[0], list):
            raise bad_request(f"Parameter '{name}' needs parts, not a value", name)
        pairs = _pairs(values[0], f"{name}.part")
        return Given(f"{self.operation} ({name})", pairs, single, repeated)

    def __contains__(self, name: str) -> bool:
        return name in self._values


def given(
    operation: str,
    query: Sequence[tuple[str, str]],
    body: Any,
    single: Iterable[str],
    repeated: Iterable[str] = (),
) -> Given:
    """The parameters of the URL and, if there is a body, of the `Parameters` it must be."""
    pairs: list[tuple[str, Any]] = list(query)
    if body is not None:
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise bad_request(f"The body of {operation} must be a Parameters resource")
        pairs += _pairs(body.get("parameter", []), "Parameters.parameter")
    return Given(operation, pairs, single, repeated)
