"""Operators' endpoints: `/healthz` for liveness probes and `/metrics` for Prometheus."""

from __future__ import annotations

import re

import httpx


def root(client: httpx.AsyncClient) -> str:
    return str(client.base_url).removesuffix("/").removesuffix("/fhir")


async def sample(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    response = await client.get(f"{root(client)}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for line in response.text.splitlines():
        match = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
        if match is None or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
        if found == labels:
            return float(match[3])
    return 0.0


async def test_healthz_returns_200_ok(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{root(client)}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_metrics_count_every_request_by_method_route_and_status(
    client: httpx.AsyncClient,
) -> None:
    name = "flode_http_requests_total"
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    created = {"method": "POST", "route": "/{type}", "status": "201"}
    missing = {"method": "GET", "route": "/{type}/{id}", "status": "404"}
    before = [await sample(client, name, **labels) for labels in (healthz, created, missing)]
    for _ in range(3):
        assert (await client.get(f"{root(client)}/healthz")).status_code == 200
    for _ in range(2):
        await client.post("Patient", json={"resourceType": "Patient"})
    await client.get("Patient/does-not-exist")
    after = [await sample(client, name, **labels) for labels in (healthz, created, missing)]
    assert [b - a for a, b in zip(before, after, strict=True)] == [3, 2, 1]


async def test_metrics_expose_request_latency(client: httpx.AsyncClient) -> None:
    await client.get("metadata")
    response = await client.get(f"{root(client)}/metrics")
    assert "flode_http_request_duration_seconds_bucket" in response.text
    assert 'route="/metadata"' in response.text


async def test_unmatched_paths_are_counted_under_one_label(client: httpx.AsyncClient) -> None:
    name = "flode_http_requests_total"
    labels = {"method": "GET", "route": "unmatched", "status": "404"}
    before = await sample(client, name, **labels)
    for n in range(3):
        await client.get(f"{root(client)}/no/such/path/{n}")
    assert await sample(client, name, **labels) == before + 3
