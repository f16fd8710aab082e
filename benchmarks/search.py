"""The search workloads: typical queries of the modules, on a loaded Synthea data set.

The values each query searches for (patients, names, identifiers, codes, months) are picked
from copy 0 of the data, which every data size holds, so the same requests run on every size
and the cost of more data shows. Each request picks one of the values at random.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from benchmarks import cpu, loadgen
from benchmarks.loadgen import HOST, read_response, request
from benchmarks.server import FlodeServer
from benchmarks.synthea import originals

SSN = "http://hl7.org/fhir/sid/us-ssn"
BODY_HEIGHT = "http://loinc.org|8302-2"
_SAMPLES = 40
_STREAM_LIMIT = 1 << 24


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    example: str
    """The request as the table shows it."""
    paths: tuple[str, ...]
    """The requests to choose from, each a path with its query string."""


@dataclass(slots=True)
class Probe:
    """What one request of a query answered before it was measured."""

    status: int
    total: int | None = None
    matches: int = 0
    included: int = 0
    problem: str = ""


@dataclass(slots=True)
class Measured:
    query: Query
    probe: Probe
    result: loadgen.Result | None = None
    usage: cpu.Usage | None = None


@dataclass(slots=True)
class Sizes:
    """Measurements per data size (patients), in the order they ran."""

    by_size: dict[int, list[Measured]] = field(default_factory=dict)
    resources: dict[int, int] = field(default_factory=dict)


def _path(resource_type: str, params: Iterable[tuple[str, str]]) -> str:
    return f"/fhir/{resource_type}?" + urlencode(list(params), quote_via=quote, safe=":/")


def queries(seed: int = 1) -> list[Query]:
    """The queries, with values picked from copy 0 of the Synthea data."""
    pick = random.Random(seed)
    patients: list[dict[str, Any]] = []
    heights: set[str] = set()
    conditions: Counter[str] = Counter()
    condition_patients: dict[str, set[str]] = {}
    for resource in originals():
        kind = resource["resourceType"]
        if kind == "Patient":
            patients.append(resource)
        elif kind == "Observation" and _codes(resource.get("code")) & {"8302-2"}:
            if str(resource.get("effectiveDateTime", "")) >= "2015":
                heights.add(_target(resource.get("subject")))
        elif kind == "Condition":
            for code in _codes(resource.get("code")):
                condition_patients.setdefault(code, set()).add(_target(resource.get("subject")))
    for code, who in condition_patients.items():
        conditions[code] = len(who)
    sample = pick.sample(patients, min(_SAMPLES, len(patients)))
    ids = [p["id"] for p in sample]
    measured_ids = [p["id"] for p in patients if p["id"] in heights][:_SAMPLES] or ids
    families = [n["family"] for p in sample for n in p.get("name", ())[:1] if "family" in n]
    ssns = [i["value"] for p in sample for i in p.get("identifier", ()) if i.get("system") == SSN]
    # Conditions a few patients have: a reverse chain that should find a handful.
    rare = sorted(code for code, n in conditions.items() if 2 <= n <= 5)[:_SAMPLES]
    months = [f"{year}-{month:02d}" for year in range(2010, 2020) for month in range(1, 13)]

    def next_month(month: str) -> str:
        year, number = int(month[:4]), int(month[5:])
        return f"{year + number // 12}-{number % 12 + 1:02d}"

    return [
        Query(
            "Patient by identifier",
            f"Patient?identifier={SSN}|…",
            tuple(_path("Patient", [("identifier", f"{SSN}|{v}")]) for v in ssns),
        ),
        Query(
            "Patient by name",
            "Patient?name={family}",
            tuple(_path("Patient", [("name", f)]) for f in families),
        ),
        Query(
            "Observation by patient, code, date",
            f"Observation?subject=Patient/…&code={BODY_HEIGHT}&date=ge2015",
            tuple(
                _path(
                    "Observation",
                    [("subject", f"Patient/{i}"), ("code", BODY_HEIGHT), ("date", "ge2015")],
                )
                for i in measured_ids
            ),
        ),
        Query(
            "Encounter by date range",
            "Encounter?date=ge{month}&date=lt{next month}",
            tuple(
                _path("Encounter", [("date", f"ge{m}"), ("date", f"lt{next_month(m)}")])
                for m in months
            ),
        ),
        Query(
            "Condition by patient",
            "Condition?patient={id}",
            tuple(_path("Condition", [("patient", i)]) for i in ids),
        ),
        Query(
            "Encounter, _include",
            "Encounter?patient={id}&_include=Encounter:practitioner",
            tuple(
                _path("Encounter", [("patient", i), ("_include", "Encounter:practitioner")])
                for i in ids
            ),
        ),
        Query(
            "Patient, _revinclude",
            "Patient?_id={id}&_revinclude=Observation:subject",
            tuple(
                _path("Patient", [("_id", i), ("_revinclude", "Observation:subject")]) for i in ids
            ),
        ),
        Query(
            "Chain",
            "Observation?subject.name={family}",
            tuple(_path("Observation", [("subject.name", f)]) for f in families),
        ),
        Query(
            "Reverse chain (_has)",
            "Patient?_has:Condition:patient:code={rare code}",
            tuple(_path("Patient", [("_has:Condition:patient:code", c)]) for c in rare),
        ),
    ]


def _codes(concept: Any) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {c["code"] for c in concept.get("coding", ()) if isinstance(c.get("code"), str)}


def _target(reference: Any) -> str:
    text = reference.get("reference", "") if isinstance(reference, dict) else ""
    return str(text).rpartition("/")[2]


async def probe(port: int, path: str) -> Probe:
    """One request, read whole: its status and how many resources it found."""
    reader, writer = await asyncio.open_connection(HOST, port, limit=_STREAM_LIMIT)
    try:
        writer.write(request("GET", path, port))
        status, _, body, _ = await read_response(reader)
    finally:
        writer.close()
    if status >= 300:
        found = Probe(status)
        try:
            issue = orjson.loads(body)["issue"][0]
            found.problem = str(issue.get("diagnostics", ""))
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            found.problem = body[:200].decode("utf-8", "replace")
        return found
    bundle = orjson.loads(body)
    modes = Counter(e.get("search", {}).get("mode") for e in bundle.get("entry", ()))
    return Probe(status, bundle.get("total"), modes["match"], modes["include"])


async def measure(
    server: FlodeServer,
    query: Query,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    seed: int,
) -> Measured:
    """Probe the query; if it answers, warm it up and measure it."""
    chooser = random.Random(seed)
    found = await probe(server.port, query.paths[0])
    measured = Measured(query, found)
    if found.status >= 300 or not query.paths:
        return measured
    payloads = [request("GET", path, server.port) for path in query.paths]

    def make() -> bytes:
        return payloads[chooser.randrange(len(payloads))]

    for phase, duration in (("warm-up", warmup_s), ("measuring", duration_s)):
        if duration <= 0:
            continue
        before = cpu.sample(server.pid, server.postgres_processes())
        result = await loadgen.run(
            query.name,
            server.port,
            make,
            concurrency=concurrency,
            duration_s=duration,
            max_requests=1_000_000,
        )
        after = cpu.sample(server.pid, server.postgres_processes())
        if phase == "measuring":
            measured.result, measured.usage = result, cpu.usage(before, after)
    return measured


async def run_all(
    server: FlodeServer,
    chosen: list[Query],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    seed: int,
    status: Callable[[str], None],
) -> list[Measured]:
    found = []
    for query in chosen:
        status(query.name)
        found.append(
            await measure(
                server,
                query,
                concurrency=concurrency,
                duration_s=duration_s,
                warmup_s=warmup_s,
                seed=seed,
            )
        )
    return found
