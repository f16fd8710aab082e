"""The Bulk Data flow as a client runs it: kick-off, polling, downloads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
Params = Mapping[str, str] | Sequence[tuple[str, str]]


async def kick_off(
    client: httpx.AsyncClient,
    path: str,
    params: Params | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """Start an export; the status URL."""
    response = await client.get(
        path,
        params=urlencode(list(params.items()) if isinstance(params, Mapping) else params)
        if params
        else None,
        headers={**ASYNC, **(headers or {})},
    )
    assert response.status_code == 202, response.text
    return response.headers["content-location"]


async def finished(client: httpx.AsyncClient, status_url: str) -> httpx.Response:
    """Poll until the export is no longer running (a minute at most); the last status."""
    for _ in range(600):
        response = await client.get(status_url, headers={"Accept": "application/json"})
        if response.status_code != 202:
            return response
        assert response.headers["retry-after"].isdigit()
        assert len(response.headers["x-progress"]) < 100
        await asyncio.sleep(0.1)
    raise AssertionError("the export did not finish in time")


async def manifest(client: httpx.AsyncClient, status_url: str) -> dict[str, Any]:
    response = await finished(client, status_url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "expires" in response.headers
    found: dict[str, Any] = response.json()
    return found


async def lines(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    response = await client.get(url, headers={"Accept": "application/fhir+ndjson"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


async def resources(client: httpx.AsyncClient, found: dict[str, Any]) -> list[dict[str, Any]]:
    """Every resource of the manifest's output files, checking each file's type and count."""
    out = []
    for item in found["output"]:
        got = await lines(client, item["url"])
        assert len(got) == item["count"]
        assert {r["resourceType"] for r in got} == {item["type"]}
        out += got
    return out


async def export(
    client: httpx.AsyncClient,
    path: str,
    params: Params | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    found = await manifest(client, await kick_off(client, path, params))
    return found, await resources(client, found)
