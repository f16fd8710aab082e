"""The patient's log extract (logguttag, DOMAIN.md L6): which care unit accessed the patient's
data, when, and how, in a form the patient can judge — a FHIR Bundle of the AuditEvents, an
HTML page or a PDF (flode.audit.pdf), with Swedish and English headings.

A care unit is named by its HSA-id and, when an Organization with that identifier is stored,
by its name. The extract is logged itself (`log-extract`); who may ask for one is decided as
for a review (flode.audit.review).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import orjson

from flode.access.policy import forbidden
from flode.audit.event import HSA_ID
from flode.audit.query import COLUMNS, date_condition, patient_id
from flode.audit.record import Executor
from flode.audit.review import AUDIT_EVENT, describe, logged, reach
from flode.context import RequestContext
from flode.fhir.bundle import bundle
from flode.fhir.errors import bad_request
from flode.store.sql import Args

try:
    SWEDEN: Any = ZoneInfo("Europe/Stockholm")
except ZoneInfoNotFoundError:  # no time zone database: UTC, and the page says so
    SWEDEN = UTC

KINDS = {
    "read": ("Läsning", "Read"),
    "vread": ("Läsning av tidigare version", "Read of an earlier version"),
    "search": ("Sökning", "Search"),
    "history": ("Läsning av historik", "Read of the history"),
    "create": ("Registrering", "Record created"),
    "update": ("Ändring", "Record changed"),
    "patch": ("Ändring", "Record changed"),
    "delete": ("Borttagning", "Record removed"),
    "everything": ("Sammanställning av journalen", "Whole record compiled"),
    "export": ("Export", "Export"),
    "emergency-reveal": (
        "Nödåtkomst: visning av var spärrade uppgifter finns",
        "Emergency access: where blocked data is",
    ),
    "emergency-open": ("Nödåtkomst: spärrade uppgifter öppnade", "Emergency access: opened"),
    "log-review": ("Loggkontroll", "Log review"),
    "log-review-result": ("Loggkontroll: resultat registrerat", "Log review: result recorded"),
    "log-extract": ("Logguttag", "Log extract"),
    "log-prune": ("Gallring av loggen", "Log pruned"),
}
FLAGS = {
    "emergency": ("Nödåtkomst", "Emergency access"),
    "protected-identity": ("Skyddade personuppgifter", "Protected identity"),
    "same-surname": ("Samma efternamn som användaren", "Same surname as the user"),
    "no-care-relationship": ("Utan vårdrelation", "No care relationship"),
    "blocked-opened": ("Spärr öppnad", "Block opened"),
}
OUTCOMES = {"4": ("Nekad", "Denied"), "8": ("Misslyckad", "Failed"), "12": ("Misslyckad", "Failed")}
PARAMETERS = ("date",)


@dataclass(frozen=True, slots=True)
class Line:
    """One access as the patient reads it."""

    recorded: datetime
    care_unit: str | None
    unit_name: str | None
    care_provider: str | None
    provider_name: str | None
    interaction: str
    outcome: str
    flags: tuple[str, ...]

    def when(self) -> str:
        return self.recorded.astimezone(SWEDEN).strftime("%Y-%m-%d %H:%M:%S")

    def unit(self) -> str:
        if self.care_unit is None:
            return "–"
        return f"{self.unit_name} ({self.care_unit})" if self.unit_name else self.care_unit

    def provider(self) -> str:
        if self.care_provider is None:
            return ""
        name = self.provider_name
        return f"{name} ({self.care_provider})" if name else self.care_provider

    def kind(self) -> tuple[str, str]:
        sv, en = KINDS.get(self.interaction, (self.interaction, self.interaction))
        if self.outcome in OUTCOMES:
            no_sv, no_en = OUTCOMES[self.outcome]
            sv, en = f"{sv} ({no_sv.lower()})", f"{en} ({no_en.lower()})"
        return sv, en

    def notes(self) -> list[tuple[str, str]]:
        return [FLAGS.get(flag, (flag, flag)) for flag in self.flags]


@dataclass(frozen=True, slots=True)
class Extract:
    patient: str
    generated: datetime
    rows: list[asyncpg.Record]
    lines: list[Line]


async def _names(executor: Executor, hsa_ids: Sequence[str]) -> dict[str, str]:
    """The names of the stored Organizations with these HSA-ids."""
    if not hsa_ids:
        return {}
    rows = await executor.fetch(
        """SELECT t.code, v.content FROM search_token t
           JOIN resource r ON r.pk = t.resource_pk AND NOT r.deleted
           JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
           WHERE t.resource_type = 'Organization' AND t.param = 'identifier'
             AND t.system = $1 AND t.code = ANY($2::text[])""",
        HSA_ID,
        list(hsa_ids),
    )
    names: dict[str, str] = {}
    for row in rows:
        name = orjson.loads(row["content"]).get("name")
        if isinstance(name, str) and name.strip():
            names.setdefault(row["code"], name.strip())
    return names


async def extract(
    executor: Executor, ctx: RequestContext, patient: str, params: Sequence[tuple[str, str]]
) -> Extract:
    """Every entry about `patient` (within `date`, if given), oldest first; logged."""
    patient = patient_id("patient", patient)
    unknown = [name for name, _ in params if name not in PARAMETERS]
    if unknown:
        raise bad_request(f"$log-extract takes only 'date', not: {', '.join(unknown)}", *unknown)

    async def work() -> Extract:
        only = reach(ctx, "s")
        if only is not None and only != patient:
            raise forbidden("The access token reaches the log of its launch patient only")
        args = Args(patient)
        where = ["e.patient_id = $1"]
        where += [date_condition("date", value, args) for _, value in params]
        rows = list(
            await executor.fetch(
                f"SELECT {COLUMNS} FROM audit_event e WHERE {' AND '.join(where)} "
                "ORDER BY e.recorded, e.seq",
                *args.values,
            )
        )
        units = {r[k] for r in rows for k in ("care_unit", "care_provider") if r[k]}
        names = await _names(executor, sorted(units))
        lines = [
            Line(
                r["recorded"],
                r["care_unit"],
                names.get(r["care_unit"] or ""),
                r["care_provider"],
                names.get(r["care_provider"] or ""),
                r["interaction"],
                r["outcome"],
                tuple(r["flags"]),
            )
            for r in rows
        ]
        return Extract(patient, datetime.now(UTC), rows, lines)

    path = f"Patient/{patient}/$log-extract"
    return await logged(
        executor, ctx, "log-extract", describe(params, path), lambda: [patient], work
    )


def bundle_of(ctx: RequestContext, found: Extract) -> dict[str, Any]:
    entries = [
        {
            "fullUrl": (
                f"{ctx.base_url}/{AUDIT_EVENT}/{row['id']}"
                if ctx.base_url
                else f"urn:uuid:{row['id']}"
            ),
            "resource": orjson.Fragment(row["content"]),
        }
        for row in found.rows
    ]
    return bundle("collection", entries, [], len(entries))


TITLE = ("Logguttag", "Log extract")
INTRO = (
    "Här ser du vilka vårdenheter som har tagit del av uppgifter om dig, när och på vilket sätt.",
    "This is which care units accessed your data, when, and how.",
)
HEADINGS = (
    ("Tidpunkt", "Time"),
    ("Vårdenhet", "Care unit"),
    ("Vårdgivare", "Care provider"),
    ("Åtkomst", "Access"),
    ("Anmärkning", "Note"),
)


def cells(line: Line) -> list[str]:
    sv, en = line.kind()
    notes = "; ".join(f"{n_sv} / {n_en}" for n_sv, n_en in line.notes())
    return [line.when(), line.unit(), line.provider(), f"{sv} / {en}", notes]


def generated_text(found: Extract) -> str:
    """When the extract was made, in Swedish time."""
    zone = "svensk tid / Swedish time" if SWEDEN is not UTC else "UTC"
    return f"{found.generated.astimezone(SWEDEN):%Y-%m-%d %H:%M} ({zone})"


def html_page(found: Extract) -> str:
    e = html.escape
    head = "".join(f"<th>{e(sv)}<br><small>{e(en)}</small></th>" for sv, en in HEADINGS)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells(line)) + "</tr>" for line in found.lines
    )
    if not found.lines:
        body = f'<tr><td colspan="{len(HEADINGS)}">Inga åtkomster / No accesses</td></tr>'
    return f"""<!DOCTYPE html>
<html lang="sv">
<head>
<meta charset="utf-8">
<title>{e(TITLE[0])} / {e(TITLE[1])}: Patient/{e(found.patient)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #999; padding: 0.3em 0.5em; text-align: left; vertical-align: top; }}
th small {{ font-weight: normal; }}
</style>
</head>
<body>
<h1>{e(TITLE[0])} <small lang="en">/ {e(TITLE[1])}</small></h1>
<p>{e(INTRO[0])}<br><span lang="en">{e(INTRO[1])}</span></p>
<p>Patient: {e(found.patient)}. Åtkomster / Accesses: {len(found.lines)}.
Skapad / Generated: {e(generated_text(found))}.</p>
<table>
<thead><tr>{head}</tr></thead>
<tbody>{body}</tbody>
</table>
<p><small>Flöde</small></p>
</body>
</html>
"""
