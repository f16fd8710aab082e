"""The Synthea patients of tests/data/synthea as a FHIR server stores them: each transaction
entry becomes `PUT Type/id`, its `urn:uuid:` references rewritten to `Type/id`. Plain Python over
the JSON, so what the tests expect is worked out without Flöde's code."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from e2e.synthea import bundle_resources as resources_of
from e2e.synthea import dump_json

DATA = Path(__file__).resolve().parents[1] / "data" / "synthea"
BUNDLES = tuple(sorted(p.name for p in DATA.glob("*.json.gz")))

Resource = dict[str, Any]


def bundle_resources(name: str) -> list[Resource]:
    """The entries of one transaction Bundle, references made relative (`Type/id`)."""
    return resources_of(DATA / name)


def dataset() -> dict[tuple[str, str], Resource]:
    """Every patient's resources, once each (bundles share Organizations and Practitioners)."""
    found: dict[tuple[str, str], Resource] = {}
    for name in BUNDLES:
        for resource in bundle_resources(name):
            found.setdefault((resource["resourceType"], resource["id"]), resource)
    return found


async def put_all(client: httpx.AsyncClient, resources: list[Resource], workers: int = 8) -> None:
    """PUT every resource (update as create), `workers` at a time."""
    queue = list(reversed(resources))
    failures: list[str] = []

    async def worker() -> None:
        while queue:
            resource = queue.pop()
            url = f"{resource['resourceType']}/{resource['id']}"
            response = await client.put(
                url,
                content=dump_json(resource).encode(),
                headers={"Content-Type": "application/fhir+json"},
            )
            if response.status_code not in (200, 201):
                failures.append(f"PUT {url} → {response.status_code}: {response.text[:300]}")

    await asyncio.gather(*(worker() for _ in range(workers)))
    assert not failures, "\n".join(failures[:10])
