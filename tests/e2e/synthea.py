"""Synthea patients (tests/data/synthea/) as the resources a FHIR server stores: each transaction
entry becomes `PUT Type/id`, with its `urn:uuid:` references rewritten to `Type/id`.

Everything here is plain Python over the JSON: no Flöde code decides what is loaded, so the
evaluator that judges the server's answers reads the same resources the server was sent.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

DATA = Path(__file__).resolve().parents[1] / "data" / "synthea"

# Ten of the smaller bundles, chosen for spread: both genders, born 1934–2019, two deceased,
# accented names (Agustín, Ordóñez), maiden names, allergies, goals, several care providers.
BUNDLES = (
    "Agustín_Fonseca_cb5696d9-a0de-4f49-94f9-433f96a28eb0.json.gz",
    "Alejandro_Riojas_a9fcc685-c7a2-4474-bf25-26c8fe4b48f9.json.gz",
    "Alfreda_Wyman_3287b938-4670-47eb-91e5-e0ce3df71405.json.gz",
    "Annmarie_Doyle_b1756d32-c4c4-4fd2-9023-ff241b55bae0.json.gz",
    "Bernardo_Ordóñez_ee5ce8e4-160e-4265-88ea-a2ebf4e2dfa9.json.gz",
    "Blair_Conroy_8de41d0d-0ae7-4cb6-97e2-900b07a1e4f7.json.gz",
    "Brett_Gottlieb_0d2177ba-f67b-4f29-addb-91040de55388.json.gz",
    "Bruno_Bernhard_4c627fdd-8f65-4ba2-b498-b432c57e70fe.json.gz",
    "Cammy_Kreiger_968df7cb-9393-48b6-a9cf-0a9e9a73d4a9.json.gz",
    "Carin_Kerluke_f71acd6f-7879-494b-b99b-da27234c2827.json.gz",
)

TAG_SYSTEM = "urn:flode:test"

Resource = dict[str, Any]


def read_json(raw: bytes | str) -> Any:
    """Decimals stay `Decimal`, so their precision (search.html#number) is the one written."""
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


def bundle_resources(path: Path) -> list[Resource]:
    """The entries of one transaction Bundle, references made relative (`Type/id`)."""
    bundle = read_json(gzip.decompress(path.read_bytes()))
    entries = bundle["entry"]
    types = {e["fullUrl"].removeprefix("urn:uuid:"): e["resource"]["resourceType"] for e in entries}
    return [_rewrite(e["resource"], types) for e in entries]


@dataclass
class Dataset:
    """The chosen patients' resources, one per (type, id): bundles share some Organizations
    and Practitioners."""

    resources: dict[tuple[str, str], Resource] = field(default_factory=dict, repr=False)

    @classmethod
    def read(cls, names: tuple[str, ...] = BUNDLES) -> Dataset:
        dataset = cls()
        for name in names:
            for resource in bundle_resources(DATA / name):
                dataset.resources.setdefault((resource["resourceType"], resource["id"]), resource)
        return dataset

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.resources.values())

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for (t, _), r in self.resources.items() if t == resource_type]

    def get(self, resource_type: str, id: str) -> Resource | None:
        return self.resources.get((resource_type, id))


def tagged(resource: Resource, code: str) -> Resource:
    """The resource with this run's tag added, so searches can leave out other tests' data."""
    meta = dict(resource.get("meta", {}))
    meta["tag"] = [*meta.get("tag", []), {"system": TAG_SYSTEM, "code": code}]
    return {**resource, "meta": meta}


async def put_all(
    client: httpx.AsyncClient, resources: list[Resource], concurrency: int = 8
) -> None:
    """PUTs every resource (update as create), `concurrency` at a time."""
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

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    assert not failures, "\n".join(failures[:10])


@dataclass(frozen=True)
class Loaded:
    """The dataset as the server holds it, and how to search only it."""

    dataset: Dataset
    tag: str

    @property
    def tag_param(self) -> tuple[str, str]:
        return ("_tag", f"{TAG_SYSTEM}|{self.tag}")


STRICT = {"Prefer": "handling=strict"}


def parse_case(case: str) -> tuple[str, list[tuple[str, str]]]:
    """`Type?a=1&b=2` (as written, not URL-encoded) → ("Type", [("a", "1"), ("b", "2")])."""
    resource_type, _, query = case.partition("?")
    pairs = [part.partition("=") for part in query.split("&") if part]
    return resource_type, [(name, value) for name, _, value in pairs]


async def search_pages(
    client: httpx.AsyncClient, path: str, params: list[tuple[str, str]]
) -> list[Resource]:
    """Every page of a search (following `next`): the Bundles, in order. Unknown parameters in
    the query are refused (`Prefer: handling=strict`) instead of silently ignored; the `next`
    links are the server's own and followed as they are."""
    response = await client.get(path, params=tuple(params), headers=STRICT)
    assert response.status_code == 200, (
        f"GET {response.url} → {response.status_code}: {response.text[:500]}"
    )
    pages = [read_json(response.content)]
    while (next_url := next_link(pages[-1])) is not None:
        assert len(pages) < 100, "more than 100 pages"
        response = await client.get(next_url, follow_redirects=True)
        assert response.status_code == 200, (
            f"GET {next_url} → {response.status_code}: {response.text[:500]}"
        )
        pages.append(read_json(response.content))
    return pages


def next_link(bundle: Resource) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            url: str = link["url"]
            return url
    return None


def entries(pages: list[Resource], mode: str | None = "match") -> list[Resource]:
    """The resources of every page's entries whose search mode is `mode` (None: any)."""
    return [
        e["resource"]
        for page in pages
        for e in page.get("entry", [])
        if mode is None or e.get("search", {}).get("mode") == mode
    ]
