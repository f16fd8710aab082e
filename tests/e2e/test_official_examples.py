"""Every official FHIR R4 example is accepted by update-as-create (PUT with its id) and read
back equal to what was sent, apart from meta.versionId and meta.lastUpdated, and the values of
a Subscription's channel.header, which are write-only (flode.access.credentials).

Validation that rejects valid FHIR is as wrong as validation that accepts invalid FHIR.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from flode.access import credentials
from flode.fhir import json

REPO = Path(__file__).resolve().parents[2]
SHARED_EXAMPLES = (REPO / ".." / "shared" / "data" / "fhir-examples").resolve()
LOCAL_EXAMPLES = REPO / "tests" / "data" / "fhir-examples"

# Examples that are themselves invalid against the base R4 definitions; each must be refused
# with 422 naming the reason, so this list cannot go stale.
KNOWN_INVALID = {
    "Questionnaire-qs1.json": "Questionnaire.item.linkId is required",
}


def comparable(value: Any) -> Any:
    """Decimals compare by their exact text, so 1.50 != 1.5 here."""
    if isinstance(value, json.Decimal):
        return ("decimal", value.text)
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def without_version_meta(resource: dict[str, Any]) -> dict[str, Any]:
    out = dict(resource)
    meta = dict(out.pop("meta", {}))
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if meta:
        out["meta"] = meta
    return out


async def round_trip(client: httpx.AsyncClient, path: Path, raw: bytes) -> str | None:
    """None if the example came back as sent, otherwise what went wrong."""
    sent = json.loads(raw)
    url = f"{sent['resourceType']}/{sent['id']}"
    put = await client.put(url, content=raw, headers={"Content-Type": "application/fhir+json"})
    if sent["resourceType"] == "AuditEvent":
        # The access log is written by Flöde alone (docs/audit.md): every API write is refused.
        return None if put.status_code == 405 else f"PUT {url} → {put.status_code}, not 405"
    if path.name in KNOWN_INVALID:
        if put.status_code != 422 or KNOWN_INVALID[path.name] not in put.text:
            return f"known invalid, but PUT {url} → {put.status_code}: {put.text[:300]}"
        return None
    if put.status_code not in (200, 201):
        return f"PUT {url} → {put.status_code}: {put.text[:500]}"
    got = await client.get(url)
    if got.status_code != 200:
        return f"GET {url} → {got.status_code}"
    back = json.loads(got.content)
    if back["meta"]["versionId"] != put.headers["etag"].split('"')[1]:
        return f"{url}: versionId does not match the ETag"
    expected = credentials.redact(sent)
    if comparable(without_version_meta(back)) != comparable(without_version_meta(expected)):
        return f"{url}: read back differs from what was sent"
    return None


async def check_all(client: httpx.AsyncClient, paths: list[Path]) -> list[str]:
    failures: list[str] = []
    for start in range(0, len(paths), 8):
        results = await asyncio.gather(
            *(round_trip(client, p, p.read_bytes()) for p in paths[start : start + 8])
        )
        failures += [
            f"{p.name}: {r}" for p, r in zip(paths[start : start + 8], results, strict=True) if r
        ]
    return failures


async def test_every_official_example_is_accepted_and_read_back_unchanged(
    client: httpx.AsyncClient,
) -> None:
    paths = sorted(SHARED_EXAMPLES.glob("*.json"))
    if not paths:
        pytest.fail(f"the official examples are missing: {SHARED_EXAMPLES}")
    assert len(paths) == 708
    assert await check_all(client, paths) == []


async def test_the_in_repository_examples_are_accepted_and_read_back_unchanged(
    client: httpx.AsyncClient,
) -> None:
    paths = sorted(LOCAL_EXAMPLES.glob("*.json"))
    assert paths, "tests/data/fhir-examples holds a small copy of the official examples"
    assert await check_all(client, paths) == []
