"""What a patient's data is, worked out from the Synthea bundles alone (no Flöde code): every
resource of the patient's bundle that refers to the patient, and the Practitioners,
Organizations, Locations and Medications those resources refer to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .synthea import BUNDLES, Resource, bundle_resources

SUPPORTING = frozenset({"Location", "Medication", "Organization", "Practitioner"})


def references(value: Any) -> Iterator[str]:
    """Every `reference` in the resource, outside contained resources."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            elif key != "contained":
                yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


@dataclass(frozen=True)
class PatientData:
    patient: str
    compartment: dict[tuple[str, str], Resource]
    supporting: dict[tuple[str, str], Resource]

    @property
    def keys(self) -> set[tuple[str, str]]:
        return set(self.compartment) | set(self.supporting)


def patient_data(bundle: str) -> PatientData:
    resources = bundle_resources(bundle)
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    compartment = {
        (r["resourceType"], r["id"]): r
        for r in resources
        if r["resourceType"] == "Patient" or f"Patient/{patient}" in set(references(r))
    }
    wanted = {ref for r in compartment.values() for ref in references(r)}
    supporting = {
        (r["resourceType"], r["id"]): r
        for r in resources
        if r["resourceType"] in SUPPORTING and f"{r['resourceType']}/{r['id']}" in wanted
    }
    return PatientData(patient, compartment, supporting)


def every_patient() -> list[PatientData]:
    return [patient_data(name) for name in BUNDLES]
