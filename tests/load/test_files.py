"""Loading one file, by either path: Bundles of every kind, what is skipped, deferred or
refused, and what each result says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import Load

PATIENT = "urn:uuid:5b1f7c4e-0c1d-4c39-8f0a-3f1e2d4c5b6a"
ORGANIZATION = "https://example.org/organizations"


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def entry(method: str, url: str, resource: Any = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"request": {"method": method, "url": url}}
    if resource is not None:
        out["resource"] = resource
    out.update(extra)
    return out


def organization(value: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": ORGANIZATION, "value": value}],
    }


def patient_of(value: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "managingOrganization": {"reference": f"Organization?identifier={ORGANIZATION}|{value}"},
    }


async def test_a_collection_is_written_by_id_with_its_references_rewritten(load: Load) -> None:
    result = await load(
        bundle(
            "collection",
            {"fullUrl": PATIENT, "resource": {"resourceType": "Patient"}},
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "o1",
                    "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": PATIENT},
                }
            },
        )
    )
    assert (result.status, result.resources) == ("loaded", 2)


async def test_a_file_with_the_content_of_one_loaded_before_is_skipped(load: Load) -> None:
    document = {"resourceType": "Patient", "id": "p1"}
    assert (await load(document, "a.json")).status == "loaded"
    skipped = await load(document, "b.json")
    assert skipped.status == "skipped"
    assert skipped.reason.endswith("a.json")
    assert (await load(document, "b.json", force=True)).status == "loaded"


async def test_a_batch_writes_each_entry_on_its_own_and_names_the_ones_that_failed(
    load: Load,
) -> None:
    result = await load(
        bundle(
            "batch",
            entry("PUT", "Patient/good", {"resourceType": "Patient", "id": "good"}),
            entry("PUT", "Patient/bad", {"resourceType": "Patient", "id": "bad", "colour": 1}),
        )
    )
    assert result.status == "failed"
    assert result.reason.startswith("1 of 2 batch entries failed, the others were written")
    assert "Bundle.entry[1] (PUT Patient/bad)" in result.reason
    assert result.resources == 1, "the entry written is recorded"
    assert result.method == "transaction"


async def test_a_transaction_with_conditional_entries_goes_through_the_machinery(
    load: Load,
) -> None:
    condition = f"identifier={ORGANIZATION}|1"
    created = entry("POST", "Organization", organization("1"), fullUrl=PATIENT)
    created["request"]["ifNoneExist"] = condition
    patient = {"resourceType": "Patient", "managingOrganization": {"reference": PATIENT}}
    result = await load(bundle("transaction", created, entry("POST", "Patient", patient)))
    assert (result.status, result.resources, result.method) == ("loaded", 2, "transaction")


async def test_conditional_references_resolve_on_both_paths(load: Load) -> None:
    assert (await load(organization("2"), "organization.json")).status == "loaded"
    result = await load({**patient_of("2"), "id": "p2"}, "patient.json")
    assert result.status == "loaded", result.reason


async def test_a_conditional_reference_to_nothing_yet_defers_the_file(load: Load) -> None:
    result = await load({**patient_of("3"), "id": "p3"}, "patient.json")
    assert result.status == "deferred"
    assert "matches no resource" in result.reason
    assert (await load(organization("3"), "organization.json")).status == "loaded"
    assert (await load({**patient_of("3"), "id": "p3"}, "patient.json")).status == "loaded"


async def test_an_invalid_resource_names_its_line_and_nothing_of_its_chunk_is_written(
    load: Load, tmp_path: Path
) -> None:
    path = tmp_path / "Patient.ndjson"
    path.write_text(
        '{"resourceType":"Patient","id":"a"}\n{"resourceType":"Patient","id":"b","gender":7}\n'
    )
    result = await load(path)
    assert result.status == "failed"
    assert result.reason.startswith("line 2 (Patient/b): ")
    assert "gender" in result.reason
    assert result.resources == 0
