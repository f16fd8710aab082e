"""The Synthea patients, loaded once per session into the test server under a tag of their own."""

from __future__ import annotations

import uuid
from typing import Protocol

import httpx
import pytest

from .synthea import Dataset, Loaded, put_all, tagged


class HasBaseUrl(Protocol):
    base_url: str

    @property
    def auth(self) -> dict[str, str]: ...


@pytest.fixture(scope="session")
async def synthea(server: HasBaseUrl) -> Loaded:
    dataset = Dataset.read()
    tag = uuid.uuid4().hex
    async with httpx.AsyncClient(
        base_url=server.base_url + "/", timeout=60, headers=server.auth
    ) as client:
        await put_all(client, [tagged(r, tag) for r in dataset])
    return Loaded(dataset, tag)
