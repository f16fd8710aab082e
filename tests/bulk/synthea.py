"""The Synthea patients of tests/data/synthea as a FHIR server stores them: each transaction
entry becomes `PUT Type/id`, its `urn:uuid:` references rewritten to `Type/id`. Plain Python over
the JSON, so what the tests expect is worked out without Flöde's code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e2e.synthea import bundle_resources as resources_of
from e2e.synthea import put_all as put_all

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
