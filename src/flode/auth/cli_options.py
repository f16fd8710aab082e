"""What the `flode module …` and `flode token …` commands share: where the database is, and how
they print."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from rich.console import Console

T = TypeVar("T")

err = Console(stderr=True)
out = Console(soft_wrap=True)


def when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "never"
