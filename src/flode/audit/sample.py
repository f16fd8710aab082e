"""Sampling the log for a systematic review (loggkontroll, DOMAIN.md L5; docs/audit.md):
`$review-sample` and `flode audit sample`.

A sample of a period (optionally of one care unit) has two parts:

- systematic: every entry of the period that carries one of the flags asked for (by default,
  any flag), oldest first, at most `SYSTEMATIC_CAP`;
- random: `size` of the other entries about a patient, drawn reproducibly from `seed` and
  spread over users and patients. Each entry's key is sha256(seed ␣ entry id), each user's key
  sha256(seed ␣ user). A user's entries are put in turn: first one entry of each patient the
  user accessed (the lowest key of each), then a second of each, and so on, ties by key. Round
  r takes the r-th entry of every user who has one, users in the order of their keys, and the
  sample is the first `size` entries of rounds 1, 2, …. So no user has a second entry drawn
  before every user of the period has one, no user more than one in a round, and a larger size
  extends a smaller one with the same seed.

The same parameters over the same entries draw the same sample: a review of a period that has
ended can be drawn again from its seed. Who may sample is decided as for a review, and a
sample is logged as one (`log-review`, flode.audit.review).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from flode.audit.event import HSA_ID
from flode.audit.parameters import Given
from flode.audit.query import COLUMNS
from flode.audit.record import FLAG_CODE, Executor
from flode.audit.review import AUDIT_EVENT, describe, logged, reach
from flode.context import RequestContext
from flode.fhir.bundle import bundle, link
from flode.fhir.dates import parse_range
from flode.fhir.errors import Issue, bad_request, operation_outcome
from flode.store.sql import Args

SAMPLE = "$review-sample"
SINGLE = ("start", "end", "care-unit", "size", "seed")
REPEATED = ("flag",)
DEFAULT_SIZE = 20
MAX_SIZE = 1000
SYSTEMATIC_CAP = 1000
SELECTION = "http://flode.example.org/StructureDefinition/review-selection"


def care_unit(name: str, value: str | None) -> str | None:
    """An HSA-id, bare or as `urn:oid:1.2.752.29.4.19|HSA-id`."""
    if value is None:
        return None
    system, bar, code = value.rpartition("|")
    if (bar and system != HSA_ID) or not code:
        raise bad_request(f"'{name}' is a care unit's HSA-id, not '{value}'", name)
    return code


@dataclass(frozen=True, slots=True)
class Plan:
    """What to draw: the period [low, high) that `start` and `end` span, and the rest."""

    start: str
    end: str
    low: datetime
    high: datetime
    care_unit: str | None
    size: int
    seed: str
    flags: tuple[str, ...]
    """The flags of the systematic part; empty: any flag."""

    @classmethod
    def of(
        cls,
        start: str,
        end: str,
        unit: str | None = None,
        size: int | None = None,
        seed: str | None = None,
        flags: Sequence[str] = (),
    ) -> Plan:
        """Checked (400 on a bad value); a seed is made when none is given."""
        low, high = parse_range(start, "start")[0], parse_range(end, "end")[1]
        if high <= low:
            raise bad_request(f"The period ends ({end}) before it starts ({start})", "end")
        size = DEFAULT_SIZE if size is None else size
        if not 0 <= size <= MAX_SIZE:
            raise bad_request(f"'size' is 0 to {MAX_SIZE}, not {size}", "size")
        if seed is not None and not 0 < len(seed) <= 64:
            raise bad_request("'seed' is 1 to 64 characters", "seed")
        for flag in flags:
            if not FLAG_CODE.match(flag):
                raise bad_request(f"'flag' is a code like 'emergency', not '{flag}'", "flag")
        return cls(
            start,
            end,
            low,
            high,
            care_unit("care-unit", unit),
            size,
            seed or secrets.token_hex(6),
            tuple(sorted(set(flags))),
        )

    @classmethod
    def given(cls, given: Given) -> Plan:
        return cls.of(
            given.required("start", "the first day of the period"),
            given.required("end", "the last day of the period"),
            given.text("care-unit"),
            given.number("size"),
            given.text("seed"),
            given.texts("flag"),
        )

    def params(self) -> list[tuple[str, str]]:
        """The parameters that draw this sample again (the seed among them)."""
        found = [("start", self.start), ("end", self.end)]
        found += [("care-unit", self.care_unit)] if self.care_unit else []
        found += [("size", str(self.size)), ("seed", self.seed)]
        return found + [("flag", flag) for flag in self.flags]


@dataclass(frozen=True, slots=True)
class Drawn:
    plan: Plan
    systematic: list[asyncpg.Record]
    flagged: int
    """The flagged entries of the period: more than `systematic` holds when capped."""
    random: list[asyncpg.Record]
    """With `round`, and `population`: how many entries the random part was drawn from."""

    @property
    def population(self) -> int:
        return int(self.random[0]["population"]) if self.random else 0


def _conditions(plan: Plan, only: str | None, args: Args) -> tuple[str, str]:
    """The entries of the period (and unit, and the only patient the request may see), and
    which of them are flagged."""
    where = [f"e.recorded >= {args.add(plan.low)}", f"e.recorded < {args.add(plan.high)}"]
    if plan.care_unit is not None:
        where.append(f"e.care_unit = {args.add(plan.care_unit)}")
    if only is not None:
        where.append(f"e.patient_id = {args.add(only)}")
    flagged = "e.flags <> '{}'"
    if plan.flags:
        flagged += f" AND e.flags && {args.add(list(plan.flags))}::text[]"
    return " AND ".join(where), flagged


async def _systematic(
    executor: Executor, plan: Plan, only: str | None
) -> tuple[list[asyncpg.Record], int]:
    args = Args()
    scope, flagged = _conditions(plan, only, args)
    rows = list(
        await executor.fetch(
            f"SELECT {COLUMNS} FROM audit_event e WHERE {scope} AND {flagged} "
            f"ORDER BY e.recorded, e.seq LIMIT {SYSTEMATIC_CAP + 1}",
            *args.values,
        )
    )
    if len(rows) <= SYSTEMATIC_CAP:
        return rows, len(rows)
    total = await executor.fetchval(
        f"SELECT count(*) FROM audit_event e WHERE {scope} AND {flagged}", *args.values
    )
    return rows[:SYSTEMATIC_CAP], int(total)


# The random part, as the module docstring says: `turn` puts one entry of each patient of a
# user before a second one, `round` is the place among the user's entries.
_RANDOM = """
WITH candidate AS (
    SELECT e.seq, e.patient_id, coalesce(e.agent_hsa_id, e.client_id, '') AS who,
        sha256(convert_to({seed} || ' ' || e.id, 'UTF8')) AS k
    FROM audit_event e
    WHERE {scope} AND e.patient_id IS NOT NULL AND NOT ({flagged})
), turned AS (
    SELECT c.*, row_number() OVER (PARTITION BY who, patient_id ORDER BY k) AS turn
    FROM candidate c
), placed AS (
    SELECT t.seq, t.k, row_number() OVER (PARTITION BY who ORDER BY turn, k) AS round,
        sha256(convert_to({seed} || ' ' || who, 'UTF8')) AS user_key,
        count(*) OVER () AS population
    FROM turned t
), drawn AS (
    SELECT * FROM placed ORDER BY round, user_key, k LIMIT {size}
)
SELECT {columns}, d.round, d.population FROM drawn d JOIN audit_event e ON e.seq = d.seq
ORDER BY d.round, d.user_key, d.k
"""


async def _random(executor: Executor, plan: Plan, only: str | None) -> list[asyncpg.Record]:
    if plan.size == 0:
        return []
    args = Args()
    scope, flagged = _conditions(plan, only, args)
    sql = _RANDOM.format(
        seed=args.add(plan.seed),
        scope=scope,
        flagged=flagged,
        size=int(plan.size),
        columns=COLUMNS,
    )
    return list(await executor.fetch(sql, *args.values))


async def draw(executor: Executor, ctx: RequestContext, asked: Plan | Given) -> Drawn:
    """The sample `asked` for (a plan, or the parameters of one), from the entries the request
    may see; logged as a review, with the parameters that draw it again."""
    named: list[str] = []
    plans: list[Plan] = []

    async def work() -> Drawn:
        only = reach(ctx, "s")
        named.extend([only] if only is not None else [])
        plan = asked if isinstance(asked, Plan) else Plan.given(asked)
        plans.append(plan)
        systematic, flagged = await _systematic(executor, plan, only)
        return Drawn(plan, systematic, flagged, await _random(executor, plan, only))

    def detail() -> str:
        return describe(plans[0].params(), f"{AUDIT_EVENT}/{SAMPLE}")

    return await logged(executor, ctx, "log-review", detail, lambda: named, work)


def full_url(ctx: RequestContext, id: str) -> str:
    return f"{ctx.base_url}/{AUDIT_EVENT}/{id}" if ctx.base_url else f"urn:uuid:{id}"


def why(drawn: Drawn, row: asyncpg.Record, randomly: bool) -> dict[str, Any]:
    """The `search.extension` saying why an entry is in the sample."""
    if randomly:
        parts: list[dict[str, Any]] = [
            {"url": "method", "valueCode": "random"},
            {"url": "round", "valuePositiveInt": int(row["round"])},
        ]
    else:
        wanted = drawn.plan.flags or row["flags"]
        parts = [{"url": "method", "valueCode": "systematic"}]
        parts += [{"url": "flag", "valueCode": f} for f in row["flags"] if f in wanted]
    return {"url": SELECTION, "extension": parts}


def summary(drawn: Drawn) -> list[Issue]:
    """What was drawn, and from what: the seed among it, so that the sample can be redrawn."""
    plan = drawn.plan
    unit = f" at care unit {plan.care_unit}" if plan.care_unit else ""
    flags = ", ".join(plan.flags) or "any flag"
    drew = (
        f"{len(drawn.random)} drawn at random from the {drawn.population} other entries about "
        f"a patient (size {plan.size})"
        if plan.size
        else "none drawn at random (size 0)"
    )
    issues = [
        Issue(
            "information",
            "informational",
            f"Sample of {plan.start} to {plan.end}{unit}, seed {plan.seed}: "
            f"{len(drawn.systematic)} entries with {flags} (systematic), and {drew}",
        )
    ]
    if drawn.flagged > len(drawn.systematic):
        issues.append(
            Issue(
                "warning",
                "too-costly",
                f"{drawn.flagged} entries of the period are flagged; the sample holds the "
                f"first {len(drawn.systematic)}. Review a shorter period, or one care unit or "
                "flag at a time, to see the others",
            )
        )
    return issues


def sample_bundle(ctx: RequestContext, drawn: Drawn) -> dict[str, Any]:
    """The searchset: the systematic entries (oldest first), then the random ones (in the
    order drawn), each with why it is there; then what was drawn, as an OperationOutcome."""
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": full_url(ctx, row["id"]),
            "resource": orjson.Fragment(row["content"]),
            "search": {"mode": "match", "extension": [why(drawn, row, randomly)]},
        }
        for rows, randomly in ((drawn.systematic, False), (drawn.random, True))
        for row in rows
    ]
    entries.append({"resource": operation_outcome(summary(drawn)), "search": {"mode": "outcome"}})
    url = f"{ctx.base_url}/{AUDIT_EVENT}/{SAMPLE}"
    total = len(drawn.systematic) + len(drawn.random)
    return bundle("searchset", entries, [link("self", url, drawn.plan.params())], total)
