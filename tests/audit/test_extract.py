"""The patient's log extract (logguttag, L6): which care unit accessed the patient's data and
when, as a Bundle, an HTML page and a PDF (flode.audit.extract, flode.audit.pdf)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from conftest import Server
from flode.audit import Access, append
from flode.audit.event import HSA_ID
from flode.audit.extract import Extract, Line
from flode.audit.pdf import latin1, pdf_document

from .conftest import PROVIDER, clinician, create, new_id

T0 = datetime(2026, 7, 1, 10, 30, tzinfo=UTC)  # 12:30 in Sweden (summer time)


async def _accessed(client: httpx.AsyncClient, pool: asyncpg.Pool) -> tuple[str, str]:
    """A patient whose data a named care unit read, and an unnamed one changed; the patient's
    id and the named unit's HSA-id."""
    unit = f"SE2321000131-E{new_id()[:10]}"
    await create(
        client,
        {
            "resourceType": "Organization",
            "identifier": [{"system": HSA_ID, "value": unit}],
            "name": "Vårdcentralen Majorna",
        },
    )
    patient = new_id()
    await append(pool, clinician(care_unit_hsa_id=unit), [Access("read", "R", patient)], at=T0)
    later = T0 + timedelta(days=1)
    emergency = clinician(
        care_unit_hsa_id="SE2321000131-E999", purpose_of_use="ETREAT", emergency_reason="Akut"
    )
    await append(pool, emergency, [Access("update", "U", patient)], at=later)
    return patient, unit


async def test_the_extract_is_a_bundle_of_the_patients_audit_events(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    patient, _ = await _accessed(client, pool)
    response = await client.get(f"Patient/{patient}/$log-extract")
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert (bundle["type"], bundle["total"]) == ("collection", 2)
    events = [e["resource"] for e in bundle["entry"]]
    assert [e["subtype"][0]["code"] for e in events] == ["read", "update"]
    assert all(e["resourceType"] == "AuditEvent" for e in events)
    assert bundle["entry"][0]["fullUrl"].endswith(f"/AuditEvent/{events[0]['id']}")
    day: list[tuple[str, str | int | float | bool | None]] = [
        ("date", "ge2026-07-02"),
        ("date", "lt2026-07-03"),
    ]
    dated = await client.get(f"Patient/{patient}/$log-extract", params=day)
    assert [e["resource"]["subtype"][0]["code"] for e in dated.json()["entry"]] == ["update"]


async def test_the_extract_as_html_names_the_care_unit_and_the_time(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    patient, unit = await _accessed(client, pool)
    response = await client.get(f"Patient/{patient}/$log-extract", params={"_format": "html"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<html lang="sv">' in page
    assert "Logguttag" in page
    assert "Log extract" in page
    assert "Vårdenhet" in page
    assert "Care unit" in page
    assert f"Vårdcentralen Majorna ({unit})" in page
    assert "2026-07-01 12:30:00" in page
    assert "Läsning / Read" in page
    assert "SE2321000131-E999" in page
    assert "Nödåtkomst / Emergency access" in page
    assert PROVIDER in page
    accepted = await client.get(
        f"Patient/{patient}/$log-extract", headers={"Accept": "text/html,*/*"}
    )
    assert accepted.headers["content-type"].startswith("text/html")


async def test_the_extract_as_pdf(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    patient, _ = await _accessed(client, pool)
    response = await client.get(f"Patient/{patient}/$log-extract", params={"_format": "pdf"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert f"logguttag-{patient}.pdf" in response.headers["content-disposition"]


async def test_the_extract_is_logged(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    patient, _ = await _accessed(client, pool)
    await client.get(f"Patient/{patient}/$log-extract", params={"_format": "html"})
    rows = await pool.fetch(
        "SELECT interaction, action FROM audit_event WHERE patient_id = $1 ORDER BY seq", patient
    )
    assert [tuple(r) for r in rows][-1] == ("log-extract", "E")
    again = await client.get(f"Patient/{patient}/$log-extract")
    codes = [e["resource"]["subtype"][0]["code"] for e in again.json()["entry"]]
    assert codes == ["read", "update", "log-extract"]


@pytest.mark.parametrize("params", [{"date": "2026-02-30"}, {"patient": "other"}, {"_count": "1"}])
async def test_a_bad_extract_request_is_a_400(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get(f"Patient/{new_id()}/$log-extract", params=params)
    assert response.status_code == 400, response.text


async def test_an_extract_of_no_accesses_says_so(client: httpx.AsyncClient) -> None:
    response = await client.get(f"Patient/{new_id()}/$log-extract", params={"_format": "html"})
    assert "Inga åtkomster / No accesses" in response.text
    bundle = (await client.get(f"Patient/{new_id()}/$log-extract")).json()
    assert bundle["total"] == 0
    assert "entry" not in bundle


def test_a_pdf_holds_text_beyond_latin_1() -> None:
    assert latin1("Åsa – “Ŵ” Łódź ✓") == 'Åsa - "W" ?ódz ?'
    line = Line(T0, "SE1-E1", "Ŵales vårdcentral ✓", None, None, "read", "0", ("emergency",))
    found = Extract("p1", T0, [], [line] * 80)
    document = pdf_document(found)
    assert document.startswith(b"%PDF-")
    assert document.count(b"/Type /Page\n") >= 2


async def test_an_extract_needs_a_token_in_every_format(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url + "/") as anonymous:
        for fmt in ("html", "pdf", "json"):
            response = await anonymous.get("Patient/1/$log-extract", params={"_format": fmt})
            assert response.status_code == 401, fmt
            assert response.json()["resourceType"] == "OperationOutcome"


async def test_an_extract_in_a_format_not_offered_is_a_406(client: httpx.AsyncClient) -> None:
    response = await client.get("Patient/1/$log-extract", params={"_format": "xml"})
    assert response.status_code == 406
