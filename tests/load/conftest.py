"""Fixtures of the `flode load` tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .support import drop_database, new_database


@pytest.fixture
async def fresh_url(database_url: str) -> AsyncIterator[str]:
    """The URL of an empty database of its own."""
    url = await new_database(database_url)
    yield url
    await drop_database(database_url, url)
