"""Whose data a response touches: the patients of the resources it returns (for the access
log, one entry per patient, L4) and the patients a search names (for the notice that blocked
data exists, L9)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from flode.audit import Access
from flode.store.records import Version


async def patients_of(
    executor: asyncpg.Pool | asyncpg.Connection, found: Iterable[Version]
) -> dict[str, list[str]]:
    """Patient id → the `Type/id` of each of `found` in that patient's compartment."""
    return await patients_of_keys(
        executor, [(v.resource_type, v.id) for v in found if v.content is not None]
    )


async def patients_of_keys(
    executor: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy,
    found: Iterable[tuple[str, str]],
) -> dict[str, list[str]]:
    """Patient id → the `Type/id` of each (type, id) of `found` in that patient's compartment."""
    keys = list(dict.fromkeys(found))
    if not keys:
        return {}
    rows = await executor.fetch(
        """SELECT k.t, k.i, pc.compartment_id FROM unnest($1::text[], $2::text[]) AS k (t, i)
           JOIN resource r ON r.resource_type = k.t AND r.id = k.i
           JOIN resource_compartment pc ON pc.resource_pk = r.pk
           AND pc.compartment_type = 'Patient'""",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    touched: dict[str, list[str]] = {}
    for row in rows:
        touched.setdefault(row["compartment_id"], []).append(f"{row['t']}/{row['i']}")
    return touched


_PATIENT_PARAMS = ("patient", "subject", "beneficiary")


def named_patients(
    params: Sequence[tuple[str, str]],
    resource_type: str | None,
    compartment: tuple[str, str] | None,
) -> set[str]:
    """The Patient ids a search names: its compartment, `patient=`/`subject=` values, and
    `_id` of a Patient search."""
    named: set[str] = set()
    if compartment is not None and compartment[0] == "Patient":
        named.add(compartment[1])
    for key, value in params:
        name = key.partition(":")[0]
        if name in _PATIENT_PARAMS or (name == "_id" and resource_type == "Patient"):
            for part in value.split(","):
                part = part.strip()
                if "/" in part and not part.startswith("Patient/"):
                    continue
                if part := part.removeprefix("Patient/"):
                    named.add(part)
    return named


def accesses(
    touched: Mapping[str, Sequence[str]],
    interaction: str,
    action: str = "R",
    detail: str | None = None,
) -> list[Access]:
    """One access log entry per patient touched (L4)."""
    return [
        Access(interaction, action, patient, tuple(what), detail=detail)
        for patient, what in sorted(touched.items())
    ]
