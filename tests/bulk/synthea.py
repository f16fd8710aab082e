"""The Synthea patients of tests/data/synthea as a FHIR server stores them: each transaction
entry becomes `PUT Type/id`, its `urn:uuid:` references rewritten to `Type/id`. Plain Python over
the JSON, so what the tests expect is worked out without Flöde's code."""

from __future__ import annotations

import asyncio
import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

DATA = Path(__file__).resolve().parents[1] / "data" / "synthea"
BUNDLES = tuple(sorted(p.name for p in DATA.glob("*.json.gz")))

Resource = dict[str, Any]


def read_json(raw: bytes | str) -> Any:
    """Decimals stay `Decimal`, with the digits they were written with."""
    return json.loads(raw, parse_float=Decimal)


def dump_json(value: Any) -> str:
    """JSON text with each `Decimal` written exactly as it was read."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump_json(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _rewrite(value: Any, types: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _rewrite(v, types) for k, v in value.items()}
        reference = out.get("reference")
        if isinstance(reference, str) and reference.startswith("urn:uuid:"):
            target = reference.removeprefix("urn:uuid:")
            out["reference"] = f"{types[target]}/{target}"
        return out
    if isinstance(value, list):
        return [_rewrite(v, types) for v in value]
    return value


def bundle_resources(name: str) -> list[Resource]:
    """The entries of one transaction Bundle, references made relative (`Type/id`)."""
    bundle = read_json(gzip.decompress((DATA / name).read_bytes()))
    entries = bundle["entry"]
    types = {e["fullUrl"].removeprefix("urn:uuid:"): e["resource"]["resourceType"] for e in entries}
    return [_rewrite(e["resource"], types) for e in entries]


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
