"""One patient's data as SQL: the resources of the Patient compartment (from the
`resource_compartment` index rows) and the supporting resources they refer to, for
`Patient/{id}/$everything`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from flode.bulk.selection import SUPPORTING, Connection
from flode.fhir.search_parameters import SearchParameters
from flode.store.records import Version
from flode.store.rows import VERSION_COLUMNS, version_of
from flode.store.sql import Args

# The parameter giving a resource's date of care, for `start` and `end`
# (patient-operation-everything.html: "the date range relates to care dates, not record
# currency dates"): where the first general rule would pick the wrong one.
_CARE_DATE = {
    "MedicationRequest": "authoredon",  # its `date` is the dosage timing
    "Condition": "onset-date",
    "ImagingStudy": "started",
    "MedicationAdministration": "effective-time",
    "MedicationDispense": "whenhandedover",
}
_CARE_DATE_ORDER = ("date", "authoredon", "onset-date", "created", "period", "effective")


def care_dates(registry: SearchParameters, types: Iterable[str]) -> dict[str, str]:
    """Per type in the compartment, the date parameter `start`/`end` compare (types without
    one are always within the range)."""
    found: dict[str, str] = {}
    for resource_type in types:
        if resource_type == "Patient" or resource_type in SUPPORTING:
            continue
        candidates = [_CARE_DATE[resource_type]] if resource_type in _CARE_DATE else []
        for code in (*candidates, *_CARE_DATE_ORDER):
            param = registry.get(resource_type, code)
            if param is not None and param.type == "date":
                found[resource_type] = code
                break
    return found


@dataclass(frozen=True, slots=True)
class Everything:
    patient: str
    start: datetime | None = None
    end: datetime | None = None
    """`end` is the end (exclusive) of the range the parameter names."""
    since: datetime | None = None
    types: tuple[str, ...] | None = None


async def keys(
    conn: Connection,
    query: Everything,
    care: Mapping[str, str],
    access: Callable[[Args], str | None] | None = None,
) -> list[int]:
    """The storage keys of the patient's resources, in the order they are returned: the
    Patient, the compartment by type and id, then the supporting resources. `access` gives the
    SQL over `resource r` admitting what the request may read (None: everything)."""
    args = Args(query.patient)
    in_range = ""
    if query.start is not None or query.end is not None:
        # Leaves out a resource that has a care date none of whose values overlaps the range.
        low = args.add(query.start or datetime.min.replace(tzinfo=UTC))
        high = args.add(query.end or datetime.max.replace(tzinfo=UTC))
        types, params = args.add(list(care)), args.add(list(care.values()))
        in_range = f"""AND NOT EXISTS (
            SELECT 1 FROM unnest({types}::text[], {params}::text[]) AS cd (type, param)
            WHERE cd.type = r.resource_type
              AND EXISTS (SELECT 1 FROM search_date d
                          WHERE d.resource_pk = r.pk AND d.param = cd.param)
              AND NOT EXISTS (SELECT 1 FROM search_date d
                              WHERE d.resource_pk = r.pk AND d.param = cd.param
                                AND d.high > {low}::timestamptz AND d.low < {high}::timestamptz))"""
    where = ["true"]
    if query.types is not None:
        where.append(f"a.resource_type = ANY({args.add(list(query.types))}::text[])")
    if query.since is not None:
        where.append(f"a.last_updated > {args.add(query.since)}")
    restriction = access(args) if access is not None else None
    if restriction is not None:
        where.append(f"({restriction})")
    supporting = args.add(list(SUPPORTING))
    rows = await conn.fetch(
        f"""WITH members AS (
                SELECT r.pk, r.resource_type, r.id, r.last_updated
                FROM resource_compartment c JOIN resource r ON r.pk = c.resource_pk
                WHERE c.compartment_type = 'Patient' AND c.compartment_id = $1
                  AND NOT r.deleted {in_range}
            ), referenced AS (
                SELECT DISTINCT t.pk, t.resource_type, t.id, t.last_updated
                FROM members m JOIN search_reference s ON s.resource_pk = m.pk
                JOIN resource t ON t.resource_type = s.target_type AND t.id = s.target_id
                WHERE s.target_type = ANY({supporting}::text[]) AND NOT t.deleted
            )
            SELECT a.pk FROM (
                SELECT *, 0 AS part FROM members UNION ALL SELECT *, 1 FROM referenced
            ) a JOIN resource r ON r.pk = a.pk
            WHERE {" AND ".join(where)}
            ORDER BY a.part, a.resource_type <> 'Patient', a.resource_type, a.id""",
        *args.values,
    )
    return [row["pk"] for row in rows]


async def versions(conn: Connection, pks: Sequence[int]) -> list[Version]:
    """The current versions of the resources, in the order of `pks` (deleted ones left out)."""
    rows = await conn.fetch(
        f"""SELECT {VERSION_COLUMNS}
            FROM unnest($1::bigint[]) WITH ORDINALITY AS k (pk, n)
            JOIN resource r ON r.pk = k.pk
            JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
            WHERE NOT r.deleted ORDER BY k.n""",
        list(pks),
    )
    return [version_of(row) for row in rows]
