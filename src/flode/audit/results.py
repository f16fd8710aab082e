"""The results of log reviews (DOMAIN.md L5: "review results are stored"; docs/audit.md):
`$review-result` records what a reviewer concluded about entries of the log, and
`$review-results` (and `flode audit results`) reads the conclusions back.

A result is stored append-only in `audit_review_result` (migration 0016) and served as a FHIR
`Basic` (flode.audit.result_basic): R4 has no resource for a conclusion about log entries, and
the others that come near do not fit (a DetectedIssue is a clinical issue of one patient's
care, a Task work still to be done). Only a reviewer whose scopes reach the whole log, and
who is a person (the token names a user's HSA-id), may record one; who may read them is
decided as for a review. Recording is logged (`log-review-result`, action C, once for each
patient of the entries), in the transaction that stores the result; reading is logged as a
review. A refused or failed recording is logged too, and stores nothing.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import asyncpg
import orjson

from flode.access.policy import forbidden
from flode.audit.parameters import Given
from flode.audit.query import date_condition
from flode.audit.record import Access, Executor, append
from flode.audit.result_basic import OUTCOMES, basic
from flode.audit.review import AUDIT_EVENT, describe, logged, reach
from flode.audit.sample import REPEATED as SAMPLE_REPEATED
from flode.audit.sample import SINGLE as SAMPLE_SINGLE
from flode.audit.sample import Plan
from flode.context import RequestContext
from flode.fhir.bundle import bundle, link
from flode.fhir.errors import FhirError, bad_request, not_found
from flode.interactions.paging import Page
from flode.store.sql import Args

RESULT = "$review-result"
RESULTS = "$review-results"
RESULT_SINGLE = ("outcome", "comment", "sample")
RESULT_REPEATED = ("entry",)
RESULTS_SINGLE = ("_count", "_cursor")
RESULTS_REPEATED = ("reviewer", "entry", "from", "to", "outcome")
MAX_ENTRIES = 1000
MAX_COMMENT = 10_000


def entry_id(value: str) -> str:
    """`id`, `AuditEvent/id` or `[base]/AuditEvent/id` → id."""
    kind, slash, id = value.rpartition("/")
    if (slash and kind != AUDIT_EVENT and not kind.endswith(f"/{AUDIT_EVENT}")) or not id:
        raise bad_request(f"'entry' names an AuditEvent: 'AuditEvent/id', not '{value}'", "entry")
    return id


def _outcome(value: str) -> str:
    if value not in OUTCOMES:
        known = ", ".join(OUTCOMES)
        raise bad_request(f"'outcome' is one of {known}, not '{value}'", "outcome")
    return value


@dataclass(frozen=True, slots=True)
class Submission:
    """A result as the reviewer gave it, checked."""

    entries: tuple[str, ...]
    outcome: str
    comment: str | None
    sample: Plan | None

    @classmethod
    def given(cls, given: Given) -> Submission:
        entries = tuple(dict.fromkeys(entry_id(value) for value in given.texts("entry")))
        if not entries:
            raise bad_request(f"{RESULT} needs 'entry': the AuditEvents concluded about", "entry")
        if len(entries) > MAX_ENTRIES:
            raise bad_request(f"A result concludes about {MAX_ENTRIES} entries at most", "entry")
        outcome = _outcome(given.required("outcome", f"one of {', '.join(OUTCOMES)}"))
        comment = given.text("comment")
        if comment is not None and len(comment) > MAX_COMMENT:
            raise bad_request(f"'comment' is {MAX_COMMENT} characters at most", "comment")
        sample = None
        if "sample" in given:
            parts = given.parts("sample", SAMPLE_SINGLE, SAMPLE_REPEATED)
            parts.required("seed", "the seed the sample was drawn with")
            sample = Plan.given(parts)
        return cls(entries, outcome, comment, sample)


def _may_record(ctx: RequestContext) -> None:
    if reach(ctx, "s") is not None:
        raise forbidden(
            "Review results are recorded by reviewers whose scopes reach the whole log "
            "(e.g. user/AuditEvent.rs), not by a patient/ scope"
        )
    if not ctx.user_hsa_id:
        raise forbidden(
            "A review result is recorded by a person: the access token names no user (HSA-id)"
        )


_INSERT = """
INSERT INTO audit_review_result (id, recorded, reviewer_hsa_id, commission_hsa_id, care_unit,
    care_provider, client_id, outcome, comment, entries, sample, content)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text[], $11, $12)
"""


async def _store(conn: asyncpg.Connection, ctx: RequestContext, given: Given) -> str:
    _may_record(ctx)
    submission = Submission.given(given)
    rows = await conn.fetch(
        "SELECT id, patient_id FROM audit_event WHERE id = ANY($1::text[])",
        list(submission.entries),
    )
    patients = {row["id"]: row["patient_id"] for row in rows}
    missing = [id for id in submission.entries if id not in patients]
    if missing:
        raise not_found(f"{', '.join(f'AuditEvent/{id}' for id in missing)}: not in the log")
    id, recorded = str(uuid.uuid4()), datetime.now(UTC)
    content = orjson.dumps(basic(ctx, id, recorded, submission)).decode()
    sample = urlencode(submission.sample.params()) if submission.sample else None
    by_patient: dict[str | None, list[str]] = defaultdict(list)
    for entry in submission.entries:
        by_patient[patients[entry]].append(f"{AUDIT_EVENT}/{entry}")
    detail = f"Review result {id}: {submission.outcome}"
    accesses = [
        Access("log-review-result", "C", patient, what=what, detail=detail)
        for patient, what in by_patient.items()
    ]
    async with conn.transaction():
        await conn.execute(
            _INSERT,
            id,
            recorded,
            ctx.user_hsa_id,
            ctx.commission_hsa_id,
            ctx.care_unit_hsa_id,
            ctx.care_provider_hsa_id,
            ctx.client_id,
            submission.outcome,
            submission.comment,
            list(submission.entries),
            sample,
            content,
        )
        await append(conn, ctx, accesses, at=recorded)
    return content


async def record(executor: Executor, ctx: RequestContext, given: Given) -> str:
    """Store the result `given` describes, and its log entries, in one transaction; the Basic
    it is served as. A refusal (400, 403, 404) stores nothing and is logged as such."""
    if isinstance(executor, asyncpg.Pool):
        async with executor.acquire() as conn:
            return await record(conn, ctx, given)
    assert isinstance(executor, asyncpg.Connection)
    try:
        return await _store(executor, ctx, given)
    except FhirError as exc:
        refused = Access("log-review-result", "C", None, outcome="4", detail=str(exc))
        await append(executor, ctx, [refused])
        raise


@dataclass(frozen=True, slots=True)
class Found:
    rows: list[asyncpg.Record]
    next_cursor: int | None
    kept: list[tuple[str, str]]
    count: int


def _conditions(given: Given, args: Args) -> list[str]:
    where = []
    reviewers = given.texts("reviewer")
    if reviewers:
        where.append(f"r.reviewer_hsa_id = ANY({args.add(reviewers)}::text[])")
    entries = [entry_id(value) for value in given.texts("entry")]
    if entries:
        where.append(f"r.entries && {args.add(entries)}::text[]")
    outcomes = [_outcome(value) for value in given.texts("outcome")]
    if outcomes:
        where.append(f"r.outcome = ANY({args.add(outcomes)}::text[])")
    where += [date_condition("from", f"ge{v}", args, "r.recorded") for v in given.texts("from")]
    where += [date_condition("to", f"le{v}", args, "r.recorded") for v in given.texts("to")]
    cursor = given.text("_cursor")
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise bad_request(f"'_cursor' is a position from a next link, not '{cursor}'")
        where.append(f"r.seq < {args.add(int(cursor))}")
    return where


async def find_results(
    executor: Executor,
    ctx: RequestContext,
    params: list[tuple[str, str]],
    *,
    default_count: int,
    max_count: int,
) -> Found:
    """The results `params` select (reviewer, entry, from, to, outcome; comma-separated values
    OR-ed), newest first, one page; logged as a review."""

    async def work() -> Found:
        if reach(ctx, "s") is not None:
            raise forbidden("Review results are for reviewers whose scopes reach the whole log")
        given = Given(RESULTS, params, RESULTS_SINGLE, RESULTS_REPEATED)
        count = Page.parse([(k, v) for k, v in params if k == "_count"], default_count, max_count)
        args = Args()
        where = " AND ".join(f"({w})" for w in _conditions(given, args)) or "true"
        rows = list(
            await executor.fetch(
                f"SELECT * FROM audit_review_result r WHERE {where} "
                f"ORDER BY r.seq DESC LIMIT {count.count + 1}",
                *args.values,
            )
        )
        more = len(rows) > count.count
        rows = rows[: count.count]
        kept = [(k, v) for k, v in params if k not in ("_count", "_cursor")]
        return Found(rows, rows[-1]["seq"] if more and rows else None, kept, count.count)

    detail = describe(params, f"{AUDIT_EVENT}/{RESULTS}")
    return await logged(executor, ctx, "log-review", detail, lambda: [], work)


def results_bundle(ctx: RequestContext, found: Found) -> dict[str, Any]:
    """The searchset of the Basic resources, with a `next` link (by key) when more match."""
    url = f"{ctx.base_url}/{AUDIT_EVENT}/{RESULTS}"
    entries = [
        {
            "fullUrl": f"urn:uuid:{row['id']}",
            "resource": orjson.Fragment(row["content"]),
            "search": {"mode": "match"},
        }
        for row in found.rows
    ]
    fixed = [*found.kept, ("_count", str(found.count))]
    links = [link("self", url, fixed)]
    if found.next_cursor is not None:
        links.append(link("next", url, [*fixed, ("_cursor", str(found.next_cursor))]))
    return bundle("searchset", entries, links)
