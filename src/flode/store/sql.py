"""Building parameterised SQL without counting placeholders by hand."""

from __future__ import annotations

from typing import Any


class Args:
    """Collects query arguments; `add` returns the placeholder (`$n`) for each."""

    def __init__(self, *initial: Any) -> None:
        self.values: list[Any] = list(initial)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


class Literals(Args):
    """An `Args` whose `add` writes the value itself into the SQL, as a quoted literal, for
    SQL that must hold no placeholders (an ORDER BY a count of the same search shares its
    arguments with): text, integers, booleans and lists of text."""

    def add(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            return quoted(value)
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return f"ARRAY[{', '.join(quoted(v) for v in value)}]::text[]"
        raise TypeError(f"no SQL literal for {type(value).__name__}")


def quoted(text: str) -> str:
    """`text` as an SQL string literal (standard_conforming_strings, as PostgreSQL has it on)."""
    if "\x00" in text:
        raise ValueError("SQL text cannot hold NUL")
    return "'" + text.replace("'", "''") + "'"
