"""What a loaded file asks to be written: ids for idempotent loads, creates as updates,
references between entries, and what cannot be loaded."""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import pytest

from flode.fhir import json
from flode.fhir.references import rewrite
from flode.load.plan import BundleWork, Write, chunks, lines, plain_writes, plan
from flode.load.sources import Line, SourceError

from .support import SYNTHEA

SALT = "0" * 64


def post(resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource}
    if full_url is not None:
        entry["fullUrl"] = full_url
    entry["request"] = {"method": "POST", "url": resource["resourceType"], **request}
    return entry


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_a_create_with_a_urn_uuid_full_url_becomes_an_update_of_that_uuid() -> None:
    id = str(uuid.uuid4())
    work = plan(bundle("transaction", post({"resourceType": "Patient"}, f"urn:uuid:{id}")), SALT)
    assert isinstance(work, BundleWork)
    (entry,) = work.entries
    assert entry["request"] == {"method": "PUT", "url": f"Patient/{id}"}
    assert entry["resource"]["id"] == id


def test_a_create_without_full_url_keeps_its_own_valid_id_or_gets_one_from_the_file() -> None:
    own = plan(bundle("transaction", post({"resourceType": "Patient", "id": "p1"})), SALT)
    assert isinstance(own, BundleWork)
    assert own.entries[0]["request"]["url"] == "Patient/p1"
    first = plan(bundle("transaction", post({"resourceType": "Patient", "id": "not valid!"})), SALT)
    again = plan(bundle("transaction", post({"resourceType": "Patient"})), SALT)
    other = plan(bundle("transaction", post({"resourceType": "Patient"})), "1" * 64)
    assert isinstance(first, BundleWork)
    assert isinstance(again, BundleWork)
    assert isinstance(other, BundleWork)
    derived = first.entries[0]["request"]["url"]
    assert derived == again.entries[0]["request"]["url"], "the same file, the same id"
    assert derived != other.entries[0]["request"]["url"]
    assert uuid.UUID(derived.removeprefix("Patient/"))


def test_conditional_creates_and_other_entries_are_left_to_the_transaction() -> None:
    conditional = post({"resourceType": "Patient"}, ifNoneExist="identifier=sys|1")
    delete = {"request": {"method": "DELETE", "url": "Patient/1"}}
    work = plan(bundle("batch", conditional, delete), SALT)
    assert isinstance(work, BundleWork)
    assert work.kind == "batch"
    assert work.entries == [conditional, delete]
    assert plain_writes(work) is None


def test_a_bundle_of_creates_is_plain_writes_with_references_to_entries_rewritten() -> None:
    patient, observation = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    work = plan(
        bundle(
            "transaction",
            post({"resourceType": "Patient"}, patient),
            post(
                {
                    "resourceType": "Observation",
                    "subject": {"reference": patient},
                    "text": {"status": "generated", "div": f'<div><a href="{patient}">p</a></div>'},
                },
                observation,
            ),
        ),
        SALT,
    )
    assert isinstance(work, BundleWork)
    writes = plain_writes(work)
    assert writes is not None
    target = f"Patient/{patient.removeprefix('urn:uuid:')}"
    assert writes[1].resource["subject"] == {"reference": target}
    assert f'href="{target}"' in writes[1].resource["text"]["div"]
    assert [w.where for w in writes] == ["Bundle.entry[0]", "Bundle.entry[1]"]


def test_a_transaction_touching_a_resource_twice_is_refused() -> None:
    work = plan(
        bundle(
            "transaction",
            post({"resourceType": "Patient", "id": "twice"}),
            post({"resourceType": "Patient", "id": "twice"}),
        ),
        SALT,
    )
    assert isinstance(work, BundleWork)
    with pytest.raises(SourceError, match="touch each resource only once"):
        plain_writes(work)


def test_a_collection_is_resources_by_id_and_a_placeholder_naming_no_entry_fails() -> None:
    patient = f"urn:uuid:{uuid.uuid4()}"
    collection = bundle(
        "collection",
        {"fullUrl": patient, "resource": {"resourceType": "Patient"}},
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o1",
                "subject": {"reference": patient},
            }
        },
    )
    writes = plan(collection, SALT)
    assert isinstance(writes, list)
    assert [w.key for w in writes] == [
        ("Patient", patient.removeprefix("urn:uuid:")),
        ("Observation", "o1"),
    ]
    dangling = bundle(
        "collection",
        {"resource": {"resourceType": "Observation", "subject": {"reference": patient}}},
    )
    with pytest.raises(SourceError, match=r"Bundle.entry\[0\]: the reference .* is to no entry"):
        plan(dangling, SALT)


def test_conditional_references_are_marked_for_a_search() -> None:
    (write,) = lines(
        [
            Line(
                3,
                {
                    "resourceType": "Encounter",
                    "id": "e",
                    "serviceProvider": {
                        "reference": "Organization?identifier=https://example.org|1"
                    },
                },
            )
        ],
        SALT,
    )
    assert write.searches
    assert write.where == "line 3"


@pytest.mark.parametrize("kind", ["searchset", "history"])
def test_results_of_a_search_or_a_history_are_refused(kind: str) -> None:
    with pytest.raises(SourceError, match=f"type {kind}"):
        plan(bundle(kind), SALT)


def test_a_document_bundle_or_a_single_resource_is_one_resource() -> None:
    document = {"resourceType": "Bundle", "id": "d", "type": "document"}
    (write,) = plan(document, SALT)  # type: ignore[misc]
    assert isinstance(write, Write)
    assert write.key == ("Bundle", "d")
    with pytest.raises(SourceError, match="not a FHIR resource"):
        plan([1, 2], SALT)


def test_chunks_never_hold_a_resource_twice() -> None:
    writes = [Write(f"line {i}", "Patient", id, {}) for i, id in enumerate("aabca")]
    assert [[w.id for w in chunk] for chunk in chunks(writes, 3)] == [["a"], ["a", "b", "c"], ["a"]]


def test_entries_are_rewritten_in_place_exactly_as_a_transaction_rewrites_them() -> None:
    """The loader rewrites the Bundle it parsed itself instead of copying it; the resources
    are what `rewrite` makes of the same Bundle, for every Synthea Bundle in the tests."""
    for path in sorted(SYNTHEA.glob("*.json.gz")):
        document = json.loads(gzip.decompress(path.read_bytes()))
        original = json.loads(gzip.decompress(path.read_bytes()))
        work = plan(document, SALT)
        assert isinstance(work, BundleWork)
        writes = plain_writes(work)
        assert writes is not None
        replacements = {w.full_url: f"{w.resource_type}/{w.id}" for w in writes if w.full_url}
        expected = [rewrite(e["resource"], replacements) for e in original["entry"]]
        assert [{**w.resource, "id": None} for w in writes] == [{**e, "id": None} for e in expected]
