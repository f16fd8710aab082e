"""What the Swedish access rules cost a search (docs/access-control.md): every search query of
`benchmarks.search`, asked once with an operator's token (no rules bind it) and once with a
clinician's (the rules of L1, L7–L9 added to the query), back to back, on the same data.

For the clinician to find what the operator finds, the data set gets, once, a world to read it
in: a care provider with one care unit (Organizations with HSA-ids), an active EpisodeOfCare at
that unit for every patient (a care relationship, L1) and every patient's consent that the
provider reads other providers' data (L8). The patients' data is marked as written by another
care provider (the `resource.owner_*` columns the rules read), so every row the rules look at
takes the consent branch, the most expensive one, rather than the shortcut for data without an
owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks import loadgen, search
from benchmarks.server import FlodeServer

HSA = "urn:oid:1.2.752.29.4.19"
PROVIDER = "SE2321000131-E000000990001"
UNIT = "SE2321000131-S000000990002"
OTHER_PROVIDER = "SE2321000131-E000000990003"
OTHER_UNIT = "SE2321000131-S000000990004"
CLINICIAN = "SE2321000131-P000000990005"
_MARKER = "policy-world"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


@dataclass(slots=True)
class Compared:
    """One query, measured as the operator and as the clinician."""

    operator: search.Measured
    clinician: search.Measured

    def cpu_overhead(self) -> float | None:
        """The extra CPU time (server + PostgreSQL) per request, in percent: steadier than
        latency on a machine that does other work."""
        a, b = cpu_ms(self.operator), cpu_ms(self.clinician)
        return (b - a) / a * 100 if a and b else None

    def overhead(self, percentile: float) -> float | None:
        a, b = self.operator.result, self.clinician.result
        if a is None or b is None or not a.requests or not b.requests:
            return None
        base = a.percentile_ms(percentile)
        return (b.percentile_ms(percentile) - base) / base * 100 if base > 0 else None


def cpu_ms(m: search.Measured) -> float | None:
    """CPU time (Python server + PostgreSQL) per request, in ms."""
    r, u = m.result, m.usage
    if r is None or u is None or not r.requests:
        return None
    return (u.server + u.postgres) * r.elapsed_s / r.requests * 1e3


def _organization(id: str, hsa: str, name: str, part_of: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": id,
        "identifier": [{"system": HSA, "value": hsa}],
        "active": True,
        "name": name,
    }
    if part_of is not None:
        resource["partOf"] = {"reference": f"Organization/{part_of}"}
    return resource


def _episode(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "EpisodeOfCare",
        "id": f"bench-listing-{patient}"[:64],
        "status": "active",
        "patient": {"reference": f"Patient/{patient}"},
        "managingOrganization": {"reference": "Organization/bench-unit"},
    }


def _consent(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": f"bench-consent-{patient}"[:64],
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {"coding": [{"system": _ACT_REASON, "code": "TREAT"}]},
        "provision": {
            "type": "permit",
            "actor": [
                {
                    "role": {"coding": [{"system": _PARTICIPATION, "code": "IRCP"}]},
                    "reference": {"reference": "Organization/bench-provider"},
                }
            ],
            "purpose": [{"system": _ACT_REASON, "code": "TREAT"}],
        },
    }


async def prepare(server: FlodeServer, console: Console) -> None:
    """Give the loaded data set the clinician's world (once per data set)."""
    marker = server.data_dir / _MARKER
    if marker.exists():
        return
    conn = await server.connect()
    try:
        patients = [r["id"] for r in await conn.fetch(PATIENTS)]
    finally:
        await conn.close()
    resources = [
        _organization("bench-provider", PROVIDER, "Benchmark care provider"),
        _organization("bench-unit", UNIT, "Benchmark care unit", "bench-provider"),
        _organization("bench-other-provider", OTHER_PROVIDER, "Another care provider"),
        *(_episode(p) for p in patients),
        *(_consent(p) for p in patients),
    ]
    headers = {"Authorization": f"Bearer {server.token()}"}
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=60) as http:

        async def put(resource: dict[str, Any]) -> None:
            async with limit:
                url = f"{resource['resourceType']}/{resource['id']}"
                response = await http.put(url, json=resource)
                if response.status_code >= 300:
                    raise RuntimeError(f"PUT {url}: {response.status_code} {response.text}")

        with console.status(f"Writing {len(resources):,} listings and consents…"):
            for organization in resources[:3]:  # the units' parents first
                await put(organization)
            await asyncio.gather(*(put(r) for r in resources[3:]))
    conn = await server.connect()
    try:
        await conn.execute(_OWNED, OTHER_PROVIDER, OTHER_UNIT)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    marker.write_text(f"{len(patients)} patients\n")


PATIENTS = "SELECT id FROM resource WHERE resource_type = 'Patient' AND NOT deleted ORDER BY id"
# The patients' data (not the world written above) as another provider's.
_OWNED = (
    "UPDATE resource r SET owner_provider = $1, owner_unit = $2 WHERE r.owner_provider IS NULL "
    "AND r.resource_type NOT IN ('EpisodeOfCare', 'Consent') AND EXISTS (SELECT 1 FROM "
    "resource_compartment c WHERE c.resource_pk = r.pk AND c.compartment_type = 'Patient')"
)


def clinician_token(server: FlodeServer) -> str:
    from flode.auth.local import issue_local
    from flode.config import Config

    root = server.base_url.removesuffix("/fhir")
    context = {
        "employee_hsa_id": CLINICIAN,
        "commission_hsa_id": CLINICIAN + "C",
        "care_unit_hsa_id": UNIT,
        "care_provider_hsa_id": PROVIDER,
        "purpose_of_use": "TREAT",
    }
    return issue_local(
        Config(data_dir=server.data_dir),
        root,
        ("user/*.rs",),
        client_id="benchmark-journal",
        lifetime=24 * 3600,
        context=context,
    )


async def compare(
    server: FlodeServer,
    chosen: Sequence[search.Query],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    seed: int,
    status: Callable[[str], None],
) -> list[Compared]:
    """Each query as the operator, then at once as the clinician."""
    tokens = {"operator": server.token(), "clinician": clinician_token(server)}
    found = []
    try:
        for query in chosen:
            measured = {}
            for who, token in tokens.items():
                status(f"{query.name} ({who})")
                loadgen.TOKEN = token
                measured[who] = await search.measure(
                    server,
                    query,
                    concurrency=concurrency,
                    duration_s=duration_s,
                    warmup_s=warmup_s,
                    seed=seed,
                )
            found.append(Compared(measured["operator"], measured["clinician"]))
    finally:
        loadgen.TOKEN = tokens["operator"]
    return found


def print_report(console: Console, patients: int, compared: list[Compared]) -> None:
    table = Table(
        title=f"The access rules' cost per search, {patients:,} patients "
        "(ms; p50 / p95; operator: no rules, clinician: L1, L7–L9 in the query)",
        title_justify="left",
    )
    columns = ("Query", "Operator", "Clinician", "Overhead p50", "Overhead p95", "CPU ms", "CPU")
    for name in (*columns, "Found"):
        table.add_column(name, justify="left" if name == "Query" else "right")
    for c in compared:
        cells = [c.operator.query.name]
        for m in (c.operator, c.clinician):
            r = m.result
            cells.append(
                f"{r.percentile_ms(50):.1f} / {r.percentile_ms(95):.1f}"
                if r is not None and r.requests
                else f"[yellow]{m.probe.status} {escape(m.probe.problem[:40])}[/]"
            )
        for percentile in (50, 95):
            value = c.overhead(percentile)
            cells.append("–" if value is None else f"{value:+.0f} %")
        a, b, extra = cpu_ms(c.operator), cpu_ms(c.clinician), c.cpu_overhead()
        cells.append("–" if a is None or b is None else f"{a:.1f} → {b:.1f}")
        cells.append("–" if extra is None else f"{extra:+.0f} %")
        cells.append(f"{c.operator.probe.total} / {c.clinician.probe.total}")
        table.add_row(*cells)
    console.print(table)
    console.print(
        "[dim]CPU ms: CPU time (Python server + PostgreSQL) per request, operator → clinician, "
        "and its overhead. Found: Bundle.total as the operator / as the clinician (the same "
        "when the rules let the clinician read everything, as here). Every request is logged in "
        "the access log either way; the difference is the rules' SQL.[/]"
    )


def as_json(patients: int, compared: list[Compared]) -> dict[str, Any]:
    return {
        str(patients): [
            {
                "query": c.operator.query.name,
                "operator_p50_ms": _p(c.operator, 50),
                "clinician_p50_ms": _p(c.clinician, 50),
                "operator_p95_ms": _p(c.operator, 95),
                "clinician_p95_ms": _p(c.clinician, 95),
                "overhead_p50_percent": c.overhead(50),
                "operator_cpu_ms": cpu_ms(c.operator),
                "clinician_cpu_ms": cpu_ms(c.clinician),
                "cpu_overhead_percent": c.cpu_overhead(),
                "found": [c.operator.probe.total, c.clinician.probe.total],
            }
            for c in compared
        ]
    }


def _p(m: search.Measured, percentile: float) -> float | None:
    return m.result.percentile_ms(percentile) if m.result and m.result.requests else None
