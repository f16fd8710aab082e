"""The Synthea data sets the search benchmark loads: the 100 patients in
`../shared/data/synthea`, and larger sets made of re-identified copies of them.

Copy 0 is the bundles as they are. Copy k > 0 replaces every uuid in a bundle by uuid5 of
(k, the old uuid), consistently throughout the bundle, so its references still hold; gives each
patient another family name (a prefix of its own, so a prefix search for a name of one copy
does not find the others), other identifier values and a birth date k weeks earlier. Every
copy of a data set is the same on every machine: 1 000 patients are copies 0-9.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

SYNTHEA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "synthea"
PATIENTS_PER_COPY = 100
# Bump when the way copies are made changes: it is part of the cache key of a loaded set.
GENERATOR_VERSION = 1

_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NAMESPACE = uuid.UUID("6f1c3d2e-5b0a-4c47-9a51-0d8e2b7f4c10")
# One family-name prefix per copy: "Koepp" in copy 3 is "Sjökoepp".
_PREFIXES = ("", "Berg", "Lind", "Sjö", "Holm", "Dahl", "Strand", "Nord", "Sand", "Fors")
_URN = "urn:uuid:"


@dataclass(frozen=True, slots=True)
class Entry:
    """One resource to load: `PUT {resource_type}/{id}` with `body`."""

    resource_type: str
    id: str
    body: bytes


def bundle_paths(folder: Path = SYNTHEA) -> list[Path]:
    paths = sorted(folder.glob("*.json.gz"))
    if not paths:
        raise FileNotFoundError(f"no Synthea bundles (*.json.gz) in {folder}")
    return paths


def copies_for(patients: int) -> int:
    copies, rest = divmod(patients, PATIENTS_PER_COPY)
    if rest or not 1 <= copies <= len(_PREFIXES):
        raise ValueError(
            f"patients must be a multiple of {PATIENTS_PER_COPY} up to "
            f"{PATIENTS_PER_COPY * len(_PREFIXES)}, not {patients}"
        )
    return copies


def fingerprint(patients: int, folder: Path = SYNTHEA) -> str:
    """What a loaded set depends on: the source bundles, the size and how copies are made."""
    digest = hashlib.sha256(f"{GENERATOR_VERSION}:{patients}".encode())
    for path in bundle_paths(folder):
        digest.update(path.name.encode())
        digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest()[:12]


def reidentified(raw: bytes, copy: int) -> dict[str, Any]:
    """The bundle `raw` (JSON) as copy `copy`."""
    if copy == 0:
        bundle: dict[str, Any] = orjson.loads(raw)
        return bundle

    def fresh(match: re.Match[bytes]) -> bytes:
        return str(uuid.uuid5(_NAMESPACE, f"{copy}:{match.group().decode()}")).encode()

    bundle = orjson.loads(_UUID.sub(fresh, raw))
    for entry in bundle.get("entry", ()):
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "Patient":
            _rename(resource, copy)
    return bundle


def _rename(patient: dict[str, Any], copy: int) -> None:
    prefix = _PREFIXES[copy]
    for name in patient.get("name", ()):
        if isinstance(name.get("family"), str):
            name["family"] = prefix + name["family"].lower()
    for identifier in patient.get("identifier", ()):
        value = identifier.get("value")
        if isinstance(value, str) and not _UUID.fullmatch(value.encode()):
            # SSN 999-22-1962 becomes 901-22-1962 in copy 1; others get the copy as a prefix.
            if identifier.get("system") == "http://hl7.org/fhir/sid/us-ssn" and value[:3] == "999":
                identifier["value"] = f"{900 + copy:03d}{value[3:]}"
            else:
                identifier["value"] = f"{copy}{value}"
    born = patient.get("birthDate")
    if isinstance(born, str) and len(born) == 10:
        patient["birthDate"] = (date.fromisoformat(born) - timedelta(weeks=copy)).isoformat()


def entries(bundle: dict[str, Any]) -> list[Entry]:
    """The bundle's resources as `PUT Type/id`, `urn:uuid:` references turned into `Type/id`."""
    types: dict[str, str] = {}
    for entry in bundle.get("entry", ()):
        resource = entry["resource"]
        types[entry.get("fullUrl") or _URN + resource["id"]] = resource["resourceType"]
    found = []
    for entry in bundle.get("entry", ()):
        resource = entry["resource"]
        _rewrite(resource, types)
        found.append(Entry(resource["resourceType"], resource["id"], orjson.dumps(resource)))
    return found


def _rewrite(value: Any, types: dict[str, str]) -> None:
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and reference.startswith(_URN) and reference in types:
            value["reference"] = f"{types[reference]}/{reference[len(_URN) :]}"
        for item in value.values():
            if isinstance(item, dict | list):
                _rewrite(item, types)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                _rewrite(item, types)


def dataset(patients: int, folder: Path = SYNTHEA) -> Iterator[Entry]:
    """Every resource of the `patients`-patient set, bundle by bundle, copy by copy."""
    paths = bundle_paths(folder)
    for copy in range(copies_for(patients)):
        for path in paths:
            yield from entries(reidentified(gzip.decompress(path.read_bytes()), copy))


def count(patients: int, folder: Path = SYNTHEA) -> int:
    """How many resources `dataset(patients)` yields (copies have as many as the original)."""
    total = 0
    for path in bundle_paths(folder):
        total += len(orjson.loads(gzip.decompress(path.read_bytes())).get("entry", ()))
    return total * copies_for(patients)


def originals(folder: Path = SYNTHEA) -> Iterator[dict[str, Any]]:
    """The resources of copy 0 as loaded (references rewritten), for picking search values."""
    for path in bundle_paths(folder):
        for entry in entries(orjson.loads(gzip.decompress(path.read_bytes()))):
            resource: dict[str, Any] = orjson.loads(entry.body)
            yield resource
