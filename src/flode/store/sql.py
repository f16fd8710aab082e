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
