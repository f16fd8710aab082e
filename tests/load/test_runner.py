"""The runner: worker processes over the files, and files deferred until the resources their
conditional references name are loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from flode.load import runner

SYSTEM = "https://example.org/organizations"


def ndjson(path: Path, *resources: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(resource) + "\n" for resource in resources))
    return path


def patient(id: str, organization: str) -> dict[str, object]:
    reference = f"Organization?identifier={SYSTEM}|{organization}"
    return {"resourceType": "Patient", "id": id, "managingOrganization": {"reference": reference}}


def organization(value: str) -> dict[str, object]:
    return {"resourceType": "Organization", "identifier": [{"system": SYSTEM, "value": value}]}


@pytest.mark.parametrize("fast", [False, True], ids=["transactions", "fast"])
def test_a_file_whose_references_come_later_is_loaded_after_them(
    migrated: str, tmp_path: Path, fast: bool
) -> None:
    files = [
        ndjson(tmp_path / "a-Patient.ndjson", patient("p1", "1")),
        ndjson(tmp_path / "b-Patient.ndjson", patient("p2", "nowhere")),
        ndjson(tmp_path / "c-Organization.ndjson", organization("1")),
    ]
    options = runner.Options(fast=fast, workers=1, concurrency=1)
    outcome = runner.run(migrated, tmp_path, files, options, Console(quiet=True))
    first, never, organizations = outcome.results
    assert (first.status, first.resources) == ("loaded", 1)
    assert organizations.status == "loaded"
    assert never.status == "failed"
    assert "matches no resource" in never.reason
    assert never.hint == runner.LOAD_REFERENCED
    assert outcome.resources == 2
