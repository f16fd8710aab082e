"""Protected identity (sekretessmarkering, OSL 22:1; DOMAIN.md L13) over real HTTP: a Patient
labelled `protected-information` leaves the server with its demographics masked through every
exit — read, vread, writes, search, `_include`, `_elements`, history, batch, `$everything`,
`$export` files, `flode export`, subscription notifications and `$events` — except for a care
unit of FLODE_PROTECTED_IDENTITY_UNITS and the patient themselves; an ordinary patient leaves
byte for byte as stored."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from flode.app import build_app
from flode.auth.local import issue_local
from flode.config import Config
from serving import serving

LABEL_SYSTEM = "http://electronichealth.se/CodeSystem/SecurityLabel"
MASKED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "MASKED",
    "display": "masked",
}
MASKED_NAME = [{"use": "anonymous", "text": "Skyddad uppgift"}]
PERSONNUMMER = "http://electronichealth.se/identifier/personnummer"
ALLOWED_UNIT = "SE2321000016-SKYD"
OTHER_UNIT = "SE2321000016-VARD"
PROVIDER = "SE2321000016-PROV"
SECRETS = ("Hemliga", "Göteborg", "070-1234567", "Svensson", "Lisa")
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
TOPIC = "http://flode.example.org/SubscriptionTopic/patient-data-changed"


def personnummer() -> str:
    """A personnummer of 1980 with a valid check digit, different every call."""
    digits = f"800101{uuid.uuid4().int % 1000:03d}"
    total = 0
    for i, d in enumerate(digits):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return f"19{digits}{(10 - total % 10) % 10}"


def protected_patient(id: str, code: str = "protected-information") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": id,
        "meta": {"security": [{"system": LABEL_SYSTEM, "code": code}]},
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">Anna Svensson, Hemliga gatan 1</div>',
        },
        "identifier": [{"system": PERSONNUMMER, "value": personnummer()}],
        "name": [{"family": "Svensson", "given": ["Anna"]}],
        "telecom": [{"system": "phone", "value": "070-1234567"}],
        "gender": "female",
        "birthDate": "1980-01-01",
        "address": [{"line": ["Hemliga gatan 1"], "city": "Göteborg", "postalCode": "41101"}],
        "contact": [{"name": {"family": "Svensson", "given": ["Lisa"]}}],
    }


def ordinary_patient(id: str) -> dict[str, Any]:
    found = protected_patient(id)
    del found["meta"]
    return found


def observation(id: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": subject},
    }


def assert_masked(resource: dict[str, Any]) -> None:
    """Demographics gone, the MASKED label on, the identifier and gender kept."""
    assert resource["resourceType"] == "Patient"
    assert resource["name"] == MASKED_NAME
    for element in ("telecom", "address", "contact", "photo", "text"):
        assert element not in resource
    assert MASKED in resource["meta"]["security"]
    assert resource["identifier"][0]["system"] == PERSONNUMMER
    assert resource["gender"] == "female"
    text = json.dumps(resource, ensure_ascii=False)
    assert not any(secret in text for secret in SECRETS)


def assert_unmasked(resource: dict[str, Any]) -> None:
    assert resource["name"] == [{"family": "Svensson", "given": ["Anna"]}]
    assert resource["address"][0]["city"] == "Göteborg"
    assert MASKED not in resource["meta"]["security"]


# -- the server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    base_url: str
    root_url: str
    database_url: str
    config: Config

    def client(self, scopes: list[str], **context: str) -> httpx.AsyncClient:
        token = issue_local(
            self.config, self.root_url, scopes, client_id="journal", context=context or None
        )
        return httpx.AsyncClient(
            base_url=self.base_url + "/",
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        )


async def _database(database_url: str) -> str:
    name = f"protected_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
async def served(
    database_url: str, test_config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """A server of its own, on a database of its own, with one care unit allowed to see
    patients with protected identity."""
    url = await _database(database_url)
    config = replace(
        test_config,
        protected_identity_units=(ALLOWED_UNIT,),
        export_dir=tmp_path_factory.mktemp("protected-exports"),
    )
    with serving(build_app(config, url, access_log=False)) as port:
        root = f"http://127.0.0.1:{port}"
        yield Served(f"{root}{config.base_path}", root, url, config)


@pytest.fixture
async def operator(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    """An administrator's token (system/*.cruds): no care unit, so it sees patients masked."""
    async with served.client(["system/*.cruds"]) as client:
        yield client


@pytest.fixture
async def other_unit(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    """A module at a care unit that is not allowed to see protected identities."""
    context = {"care_unit_hsa_id": OTHER_UNIT, "care_provider_hsa_id": PROVIDER}
    async with served.client(["user/*.cruds"], **context) as client:
        yield client


@pytest.fixture
async def allowed_unit(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    """A module at the care unit FLODE_PROTECTED_IDENTITY_UNITS names."""
    context = {"care_unit_hsa_id": ALLOWED_UNIT, "care_provider_hsa_id": PROVIDER}
    async with served.client(["user/*.cruds"], **context) as client:
        yield client


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
    assert response.status_code in (200, 201), response.text
    found: dict[str, Any] = response.json()
    return found


async def ok(response: Awaitable[httpx.Response]) -> dict[str, Any]:
    got = await response
    assert got.status_code == 200, got.text
    found: dict[str, Any] = got.json()
    return found


@pytest.fixture
async def protected(operator: httpx.AsyncClient) -> str:
    """A protected patient with an Observation; the patient's id."""
    id = f"skyddad-{uuid.uuid4().hex[:12]}"
    await put(operator, protected_patient(id))
    await put(operator, observation(f"{id}-obs", f"Patient/{id}"))
    return id


async def stored(served: Served, resource_type: str, id: str) -> str:
    """The current version's JSON exactly as stored."""
    conn = await asyncpg.connect(served.database_url)
    try:
        content: str = await conn.fetchval(
            """SELECT v.content FROM resource r JOIN resource_version v
               ON v.resource_pk = r.pk AND v.version = r.version
               WHERE r.resource_type = $1 AND r.id = $2""",
            resource_type,
            id,
        )
    finally:
        await conn.close()
    return content


def entries(bundle: dict[str, Any], resource_type: str = "Patient") -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if e.get("resource", {}).get("resourceType") == resource_type
    ]


# -- read, vread, writes ----------------------------------------------------------------------


async def test_masks_the_name_address_and_telecom_of_a_protected_patient_on_read(
    other_unit: httpx.AsyncClient, protected: str
) -> None:
    assert_masked(await ok(other_unit.get(f"Patient/{protected}")))


async def test_masks_a_protected_patient_for_a_token_without_a_care_unit(
    operator: httpx.AsyncClient, protected: str
) -> None:
    assert_masked(await ok(operator.get(f"Patient/{protected}")))


async def test_masks_every_version_read_of_a_protected_patient(
    other_unit: httpx.AsyncClient, protected: str
) -> None:
    assert_masked(await ok(other_unit.get(f"Patient/{protected}/_history/1")))


async def test_masks_a_protected_patient_whatever_elements_are_asked_for(
    other_unit: httpx.AsyncClient, protected: str
) -> None:
    found = await ok(other_unit.get(f"Patient/{protected}", params={"_elements": "name,address"}))
    assert found["name"] == MASKED_NAME
    assert "address" not in found
    summary = await ok(other_unit.get(f"Patient/{protected}", params={"_summary": "true"}))
    assert summary["name"] == MASKED_NAME


async def test_masks_the_representation_a_write_of_a_protected_patient_returns(
    other_unit: httpx.AsyncClient, protected: str
) -> None:
    resource = protected_patient(protected) | {"birthDate": "1980-01-02"}
    response = await other_unit.put(
        f"Patient/{protected}", json=resource, headers={"Prefer": "return=representation"}
    )
    assert response.status_code == 200, response.text
    assert_masked(response.json())


async def test_recognises_every_code_of_the_label_and_hl7_swedens_code_system(
    operator: httpx.AsyncClient,
) -> None:
    for system, code in (
        (LABEL_SYSTEM, "sekretessmarkering"),
        (LABEL_SYSTEM, "skyddadFolkbokforing"),
        ("http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel", "sekretessmarkering"),
    ):
        id = f"skyddad-{uuid.uuid4().hex[:12]}"
        resource = protected_patient(id)
        resource["meta"] = {"security": [{"system": system, "code": code}]}
        await put(operator, resource)
        assert_masked(await ok(operator.get(f"Patient/{id}")))


# -- who sees them ------------------------------------------------------------------------------


async def test_an_allowed_care_unit_sees_a_protected_patient_unmasked(
    allowed_unit: httpx.AsyncClient, protected: str, served: Served
) -> None:
    response = await allowed_unit.get(f"Patient/{protected}")
    assert response.status_code == 200
    assert response.content == (await stored(served, "Patient", protected)).encode()
    found = await ok(allowed_unit.get("Patient", params={"_id": protected}))
    assert_unmasked(entries(found)[0])


async def test_the_patient_themselves_sees_their_own_record_unmasked(
    served: Served, protected: str
) -> None:
    async with served.client(["patient/*.rs"], patient=protected) as patient:
        response = await patient.get(f"Patient/{protected}")
        assert response.status_code == 200, response.text
        assert response.content == (await stored(served, "Patient", protected)).encode()
        found = await ok(patient.get("Patient", params={"_id": protected}))
        assert_unmasked(entries(found)[0])


async def test_another_patient_sees_a_protected_patient_in_their_compartment_masked(
    served: Served, operator: httpx.AsyncClient
) -> None:
    """Patient.link puts a protected patient into another patient's compartment: readable
    with that patient's token, but not their own record."""
    reader = f"vanlig-{uuid.uuid4().hex[:12]}"
    await put(operator, ordinary_patient(reader))
    other = f"skyddad-{uuid.uuid4().hex[:12]}"
    link = [{"other": {"reference": f"Patient/{reader}"}, "type": "seealso"}]
    await put(operator, protected_patient(other) | {"link": link})
    async with served.client(["patient/*.rs"], patient=reader) as patient:
        found = await ok(patient.get("Patient", params={"_id": f"{reader},{other}"}))
        by_id = {r["id"]: r for r in entries(found)}
        assert_masked(by_id[other])
        assert by_id[reader]["name"] == [{"family": "Svensson", "given": ["Anna"]}]


# -- ordinary patients: the fast path ----------------------------------------------------------


async def test_returns_an_ordinary_patient_byte_identical_to_what_is_stored(
    other_unit: httpx.AsyncClient, operator: httpx.AsyncClient, served: Served
) -> None:
    id = f"vanlig-{uuid.uuid4().hex[:12]}"
    await put(operator, ordinary_patient(id))
    content = await stored(served, "Patient", id)
    response = await other_unit.get(f"Patient/{id}")
    assert response.content == content.encode()
    search = await other_unit.get("Patient", params={"_id": id})
    assert content in search.text


async def test_returns_a_patient_that_only_mentions_a_label_code_byte_identical(
    other_unit: httpx.AsyncClient, operator: httpx.AsyncClient, served: Served
) -> None:
    """The code in another system, or in a tag, is no label: the slow path hands it back as is."""
    id = f"vanlig-{uuid.uuid4().hex[:12]}"
    resource = ordinary_patient(id)
    resource["meta"] = {
        "tag": [{"system": LABEL_SYSTEM, "code": "sekretessmarkering"}],
        "security": [{"system": "http://example.org/labels", "code": "protected-information"}],
    }
    await put(operator, resource)
    content = await stored(served, "Patient", id)
    response = await other_unit.get(f"Patient/{id}")
    assert response.content == content.encode()


# -- Bundles ------------------------------------------------------------------------------------


async def test_masks_the_name_and_address_of_a_protected_patient_in_search_results(
    other_unit: httpx.AsyncClient, protected: str
) -> None:
    found = await ok(other_unit.get("Patient", params={"_id": protected}))
    [patient] = entries(found)
    assert_masked(patient)
    subset = await ok(other_unit.get("Patient", params={"_id": protected, "_elements": "name"}))
    assert entries(subset)[0]["name"] == MASKED_NAME


async def test_masks_a_protected_patient_included_from_an_observation_search(
    other_unit: httpx.AsyncClient, protected: str
) -> None:
    found = await ok(
        other_unit.get(
            "Observation",
            params={"subject": f"Patient/{protected}", "_include": "Observation:subject"},
        )
    )
    assert [e["search"]["mode"] for e in found["entry"]] == ["match", "include"]
    [patient] = entries(found)
    assert_masked(patient)
    reverse = await ok(
        other_unit.get("Patient", params={"_id": protected, "_revinclude": "Observation:subject"})
    )
    assert_masked(entries(reverse)[0])
    assert len(entries(reverse, "Observation")) == 1


DEMOGRAPHIC_SEARCHES = [
    {"name": "Svensson"},
    {"family": "Svensson"},
    {"given": "Anna"},
    {"address-city": "Göteborg"},
    {"address": "Hemliga"},
    {"address-postalcode": "41101"},
    {"phone": "070-1234567"},
    {"telecom": "070-1234567"},
    {"_content": "Hemliga"},
    {"_text": "Hemliga"},
]


@pytest.mark.parametrize("criteria", DEMOGRAPHIC_SEARCHES, ids=lambda c: next(iter(c)))
async def test_a_search_by_masked_demographics_does_not_find_a_protected_patient(
    other_unit: httpx.AsyncClient, allowed_unit: httpx.AsyncClient, protected: str, criteria: Any
) -> None:
    found = await ok(other_unit.get("Patient", params={**criteria, "_id": protected}))
    assert entries(found) == []
    # Those who see the demographics find the patient by them.
    found = await ok(allowed_unit.get("Patient", params={**criteria, "_id": protected}))
    assert [p["id"] for p in entries(found)] == [protected]


async def test_a_search_by_what_is_not_masked_still_finds_a_protected_patient_masked(
    other_unit: httpx.AsyncClient, protected: str
) -> None:
    found = await ok(
        other_unit.get("Patient", params={"birthdate": "1980-01-01", "_id": protected})
    )
    [patient] = entries(found)
    assert_masked(patient)


async def test_no_chain_or_system_search_finds_a_protected_patient_by_its_address(
    other_unit: httpx.AsyncClient, allowed_unit: httpx.AsyncClient, protected: str
) -> None:
    chain = {"subject:Patient.address-city": "Göteborg", "subject": f"Patient/{protected}"}
    assert entries(await ok(other_unit.get("Observation", params=chain)), "Observation") == []
    found = await ok(allowed_unit.get("Observation", params=chain))
    assert len(entries(found, "Observation")) == 1
    found = await ok(other_unit.get("", params={"_type": "Patient", "_content": "Hemliga"}))
    assert protected not in {p["id"] for p in entries(found)}


async def test_no_has_finds_a_patient_through_a_protected_patients_address(
    operator: httpx.AsyncClient, other_unit: httpx.AsyncClient, allowed_unit: httpx.AsyncClient
) -> None:
    ordinary, secret = f"o-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    await put(operator, {"resourceType": "Patient", "id": ordinary})
    link = {"other": {"reference": f"Patient/{ordinary}"}, "type": "seealso"}
    await put(operator, protected_patient(secret) | {"link": [link]})
    has = {"_has:Patient:link:address-city": "Göteborg", "_id": ordinary}
    assert entries(await ok(other_unit.get("Patient", params=has))) == []
    found = await ok(allowed_unit.get("Patient", params=has))
    assert [p["id"] for p in entries(found)] == [ordinary]


@pytest.mark.parametrize("order", ["family", "-family", "name", "address-city"])
async def test_a_sort_by_masked_demographics_puts_a_protected_patient_last(
    operator: httpx.AsyncClient,
    other_unit: httpx.AsyncClient,
    allowed_unit: httpx.AsyncClient,
    protected: str,
    order: str,
) -> None:
    """Its place among the others would tell what the mask hides (Svensson, Göteborg)."""
    first, last = f"a-{uuid.uuid4().hex[:8]}", f"z-{uuid.uuid4().hex[:8]}"
    for id, family, city in ((first, "Andersson", "Alingsås"), (last, "Wallin", "Ystad")):
        patient = ordinary_patient(id)
        patient["name"] = [{"family": family}]
        patient["address"] = [{"city": city}]
        await put(operator, patient)
    params = {"_id": f"{first},{protected},{last}", "_sort": order}
    found = [p["id"] for p in entries(await ok(other_unit.get("Patient", params=params)))]
    ends = [last, first] if order.startswith("-") else [first, last]
    assert found == [*ends, protected]
    # Those who see the name sort the patient where it belongs.
    found = [p["id"] for p in entries(await ok(allowed_unit.get("Patient", params=params)))]
    assert found == [ends[0], protected, ends[1]]


async def test_the_patient_finds_themselves_by_their_own_demographics(
    served: Served, protected: str
) -> None:
    async with served.client(["patient/*.rs"], patient=protected) as patient:
        found = await ok(patient.get("Patient", params={"address-city": "Göteborg"}))
        assert [p["id"] for p in entries(found)] == [protected]


async def test_masks_every_version_of_a_protected_patient_in_its_history(
    other_unit: httpx.AsyncClient, operator: httpx.AsyncClient, protected: str
) -> None:
    await put(operator, protected_patient(protected) | {"birthDate": "1980-01-03"})
    for url in (f"Patient/{protected}/_history", "Patient/_history"):
        found = await ok(other_unit.get(url, params={"_count": "1000"}))
        versions = [p for p in entries(found) if p["id"] == protected]
        assert len(versions) >= 2
        for version in versions:
            assert_masked(version)


async def test_masks_a_protected_patient_in_batch_and_transaction_responses(
    other_unit: httpx.AsyncClient, operator: httpx.AsyncClient, protected: str
) -> None:
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{protected}"}},
            {"request": {"method": "GET", "url": f"Patient?_id={protected}"}},
            {
                "resource": protected_patient(protected),
                "request": {"method": "PUT", "url": f"Patient/{protected}"},
            },
        ],
    }
    found = await ok(operator.post("", json=batch))
    read, search, write = (e["resource"] for e in found["entry"])
    assert_masked(read)
    assert_masked(entries(search)[0])
    assert_masked(write)
    transaction = batch | {"type": "transaction", "entry": batch["entry"][2:]}
    done = await ok(operator.post("", json=transaction))
    assert_masked(done["entry"][0]["resource"])


async def test_masks_a_patient_contained_in_a_resource_that_carries_the_label(
    other_unit: httpx.AsyncClient, operator: httpx.AsyncClient
) -> None:
    """A contained resource has no security label of its own (dom-5): the container's covers
    what it contains."""
    id = f"behallare-{uuid.uuid4().hex[:12]}"
    contained = {k: v for k, v in protected_patient("p").items() if k not in ("meta", "text")}
    labelled = observation(id, "#p") | {
        "meta": {"security": [{"system": LABEL_SYSTEM, "code": "sekretessmarkering"}]},
        "contained": [contained],
    }
    await put(operator, labelled)
    found = await ok(other_unit.get(f"Observation/{id}"))
    assert_masked(found["contained"][0])
    assert found["subject"] == {"reference": "#p"}
    search = await ok(other_unit.get("Observation", params={"_id": id}))
    assert_masked(entries(search, "Observation")[0]["contained"][0])


async def test_masks_a_protected_patient_in_everything(
    other_unit: httpx.AsyncClient, allowed_unit: httpx.AsyncClient, protected: str
) -> None:
    found = await ok(other_unit.get(f"Patient/{protected}/$everything"))
    [patient] = entries(found)
    assert_masked(patient)
    assert len(entries(found, "Observation")) == 1
    unmasked = await ok(allowed_unit.get(f"Patient/{protected}/$everything"))
    assert_unmasked(entries(unmasked)[0])


# -- exports ---------------------------------------------------------------------------------


async def export_patients(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """A system-level export of Patients as the client runs it; the exported Patients."""
    kick_off = await client.get(
        "$export",
        params={"_type": "Patient"},
        headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
    )
    assert kick_off.status_code == 202, kick_off.text
    status_url = kick_off.headers["content-location"]
    for _ in range(600):
        status = await client.get(status_url, headers={"Accept": "application/json"})
        if status.status_code != 202:
            break
        await asyncio.sleep(0.1)
    assert status.status_code == 200, status.text
    found = []
    for item in status.json()["output"]:
        response = await client.get(item["url"], headers={"Accept": "application/fhir+ndjson"})
        assert response.status_code == 200, response.text
        found += [json.loads(line) for line in response.text.splitlines()]
    return found


async def test_masks_a_protected_patient_in_the_files_of_an_export(
    other_unit: httpx.AsyncClient, allowed_unit: httpx.AsyncClient, protected: str
) -> None:
    masked = {p["id"]: p for p in await export_patients(other_unit)}
    assert_masked(masked[protected])
    unmasked = {p["id"]: p for p in await export_patients(allowed_unit)}
    assert_unmasked(unmasked[protected])


def flode_export(served: Served, folder: Path, *options: str) -> dict[str, dict[str, Any]]:
    """`flode export --type Patient` into `folder`; the exported Patients by id."""
    command = [sys.executable, "-m", "flode", "export", "--database-url", served.database_url]
    result = subprocess.run(
        [*command, "--type", "Patient", *options, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = {}
    for path in folder.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            found[resource["id"]] = resource
    return found


async def test_flode_export_masks_a_protected_patient_unless_told_to_keep_it(
    served: Served, protected: str, tmp_path: Path
) -> None:
    assert_masked(flode_export(served, tmp_path / "masked")[protected])
    kept = flode_export(served, tmp_path / "kept", "--unmask-protected")[protected]
    assert kept == json.loads(await stored(served, "Patient", protected))


# -- events --------------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A rest-hook endpoint on the loopback interface that keeps the Bundles it is sent."""

    bundles: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> None:
        bundles = self.bundles

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                bundles.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def resources(self) -> list[dict[str, Any]]:
        return [
            e["resource"]
            for bundle in self.bundles
            for e in bundle.get("entry", [])[1:]
            if "resource" in e
        ]


@pytest.fixture
def receivers() -> Iterator[Callable[[], Receiver]]:
    started: list[Receiver] = []

    def start() -> Receiver:
        receiver = Receiver()
        receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def subscription(endpoint: str, patient: str) -> dict[str, Any]:
    """A full-resource rest-hook Subscription to the changes of one Patient."""
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [f"{BACKPORT}backport-subscription"]},
        "status": "requested",
        "reason": "protected identity",
        "criteria": TOPIC,
        "_criteria": {
            "extension": [
                {
                    "url": f"{BACKPORT}backport-filter-criteria",
                    "valueString": f"Patient?_id={patient}",
                }
            ]
        },
        "channel": {
            "extension": [{"url": f"{BACKPORT}backport-timeout", "valueUnsignedInt": 5}],
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {"url": f"{BACKPORT}backport-payload-content", "valueCode": "full-resource"}
                ]
            },
        },
    }


async def eventually(check: Callable[[], Any], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


async def active(client: httpx.AsyncClient, id: str) -> None:
    for _ in range(600):
        if (await ok(client.get(f"Subscription/{id}")))["status"] == "active":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"Subscription/{id} did not become active")


async def test_masks_a_protected_patient_in_a_full_resource_notification(
    other_unit: httpx.AsyncClient,
    allowed_unit: httpx.AsyncClient,
    operator: httpx.AsyncClient,
    receivers: Callable[[], Receiver],
    protected: str,
) -> None:
    """Each subscriber gets what its own access sees: decided from the context kept with the
    Subscription, not from whoever wrote the change."""
    masked_hook, unmasked_hook = receivers(), receivers()
    ids = []
    for client, hook in ((other_unit, masked_hook), (allowed_unit, unmasked_hook)):
        response = await client.post("Subscription", json=subscription(hook.url, protected))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    for id in ids:
        await active(operator, id)
    # Written by the allowed unit: the other unit's subscriber still gets it masked.
    await put(allowed_unit, protected_patient(protected) | {"birthDate": "1980-01-04"})
    await eventually(lambda: masked_hook.resources() and unmasked_hook.resources())
    [masked] = masked_hook.resources()
    assert_masked(masked)
    assert masked["birthDate"] == "1980-01-04"
    [unmasked] = unmasked_hook.resources()
    assert_unmasked(unmasked)

    # `$events` again, as whoever asks may see them.
    params = {"content": "full-resource"}
    again = await ok(other_unit.get(f"Subscription/{ids[1]}/$events", params=params))
    assert [r["id"] for r in entries(again)] == [protected]
    assert_masked(entries(again)[0])
    mine = await ok(allowed_unit.get(f"Subscription/{ids[1]}/$events", params=params))
    assert_unmasked(entries(mine)[0])
    for id in ids:
        response = await operator.delete(f"Subscription/{id}")
        assert response.status_code in (200, 204), response.text
