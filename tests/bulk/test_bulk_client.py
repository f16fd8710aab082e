"""A real Bulk Data client from the npm registry (Medplum's `@medplum/core`, installed into
`.node/` by `make test`) drives `$export` end to end: kick-off, polling, manifest, downloads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.synthea import read_json

from .conftest import Source
from .expected import every_patient

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / ".node" / "node_modules"
SCRIPT = Path(__file__).resolve().parent / "client" / "export.mjs"


def client_export(
    source: Source, level: str, types: str, since: str, out: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the client; the manifest it got and every resource it downloaded."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "@medplum" / "core").is_dir():
        pytest.fail(
            "The Bulk Data client is not installed: run `make test` (it installs Node.js "
            "packages into .node/ with npm), or `make .node/.installed`."
        )
    root = source.base_url.removesuffix("/fhir")
    result = subprocess.run(
        [node, str(SCRIPT), root, source.token, level, types, since, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "FLODE_NODE_MODULES": str(NODE_MODULES)},
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    resources = [
        read_json(line)
        for path in sorted(out.glob("*.ndjson"))
        for line in path.read_text().splitlines()
    ]
    return manifest, resources


def test_the_client_exports_every_patients_data(source: Source, tmp_path: Path) -> None:
    manifest, resources = client_export(source, "Patient", "", "", tmp_path)
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"] == f"{source.base_url}/Patient/$export"
    found = {(r["resourceType"], r["id"]) for r in resources}
    expected = set().union(*(p.keys for p in every_patient()))
    assert expected <= found
    assert sum(item["count"] for item in manifest["output"]) == len(resources)


def test_the_client_exports_a_group_with_types_and_since(source: Source, tmp_path: Path) -> None:
    members = every_patient()[7:9]
    group = {
        "resourceType": "Group",
        "id": f"g-{uuid.uuid4()}",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{p.patient}"}} for p in members],
    }
    response = httpx.put(
        f"{source.base_url}/Group/{group['id']}", json=group, headers=source.auth, timeout=30
    )
    assert response.status_code == 201
    manifest, resources = client_export(
        source, f"Group/{group['id']}", "Patient,Condition", "2000-01-01T00:00:00Z", tmp_path
    )
    wanted = {k for p in members for k in p.keys if k[0] in ("Patient", "Condition")}
    assert {(r["resourceType"], r["id"]) for r in resources} == wanted
    assert "_type=Patient" in manifest["request"]
