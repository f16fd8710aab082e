"""`flode audit …`: verify the log's hash chain, review it (search, sample, record and read
review results), extract a patient's log, and prune entries past the retention
(docs/audit.md). Each works beside a running `flode serve`, on the database `--data-dir` or
`--database-url` names, and each review or extract is logged with the operator as its agent.
"""

from __future__ import annotations

import getpass
import sys
import uuid
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console

from flode.context import RequestContext
from flode.store.attach import data_dir_option, database_url_option, with_database

T = TypeVar("T")

err = Console(stderr=True)
out = Console(soft_wrap=True)

_data_dir = data_dir_option
_database_url = database_url_option
_reviewer = click.option(
    "--reviewer",
    default=None,
    envvar="FLODE_REVIEWER_HSA_ID",
    help="Your HSA-id, recorded as the agent of the review [env: FLODE_REVIEWER_HSA_ID].",
)


_format = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    help="A table, or FHIR JSON [default: table].",
)


def operator(
    task: str, reviewer: str | None, unit: str | None = None, provider: str | None = None
) -> RequestContext:
    """Whoever runs the command, as the log records them: the operator's client, the login
    name, and the reviewer's HSA-id (and care unit and provider) when given."""
    from flode.auth.local import OPERATOR

    return RequestContext(
        request_id=f"cli:audit-{task}:{uuid.uuid4()}",
        base_url="",
        user_hsa_id=reviewer,
        care_unit_hsa_id=unit,
        care_provider_hsa_id=provider,
        client_id=OPERATOR,
        subject=getpass.getuser(),
        trusted=True,
    )


@click.group()
def audit() -> None:
    """The access log: verify, review, extract, prune (docs/audit.md)."""


@audit.command()
@click.option("--seal", is_flag=True, help="Seal the entries not sealed yet first.")
@_data_dir
@_database_url
def verify(seal: bool, data_dir: Path | None, database_url: str | None) -> None:
    """Walk the hash chain from the first retained entry: exit 1 if an entry was changed or
    removed."""
    from flode.audit.commands import verify_chain

    sys.exit(with_database(data_dir, database_url, lambda conn: verify_chain(conn, seal, err)))


@audit.command()
@click.option("--patient", default=None, help="Entries about this Patient (id).")
@click.option("--user", default=None, help="Entries of this user (HSA-id).")
@click.option("--unit", default=None, help="Entries of this care unit (HSA-id).")
@click.option("--since", default=None, help="Recorded at or after this date or time.")
@click.option("--until", default=None, help="Recorded at or before this date or time.")
@click.option("--flag", "flags", multiple=True, help="With any of these flags (repeat).")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, help="At most this many [default: 100]."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    help="A table, or the AuditEvents as a JSON array [default: table].",
)
@_reviewer
@_data_dir
@_database_url
def search(
    patient: str | None,
    user: str | None,
    unit: str | None,
    since: str | None,
    until: str | None,
    flags: tuple[str, ...],
    limit: int,
    fmt: str,
    reviewer: str | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Review the log, newest entries first (logged as a review)."""
    from flode.audit.commands import search_log

    params = [
        (name, value)
        for name, value in (
            ("patient", patient),
            ("agent", user),
            ("care-unit", unit),
            ("date", None if since is None else f"ge{since}"),
            ("date", None if until is None else f"le{until}"),
            ("flag", ",".join(flags) or None),
        )
        if value is not None
    ]
    ctx = operator("search", reviewer)
    code = with_database(
        data_dir, database_url, lambda conn: search_log(conn, ctx, params, limit, fmt, out, err)
    )
    sys.exit(code)


@audit.command()
@click.option("--patient", required=True, help="The Patient (id).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "pdf", "json"]),
    default="html",
    help="An HTML page, a PDF, or a FHIR Bundle [default: html].",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write.",
)
@click.option("--since", default=None, help="Only entries recorded at or after this date.")
@click.option("--until", default=None, help="Only entries recorded at or before this date.")
@_reviewer
@_data_dir
@_database_url
def extract(
    patient: str,
    fmt: str,
    output: Path,
    since: str | None,
    until: str | None,
    reviewer: str | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Write a patient's log extract (logguttag): which care units accessed the patient's
    data, and when (logged as an extract)."""
    from flode.audit.commands import FAILED, make_extract

    params = [("date", f"ge{since}")] if since else []
    params += [("date", f"le{until}")] if until else []
    ctx = operator("extract", reviewer)
    made = with_database(
        data_dir, database_url, lambda conn: make_extract(conn, ctx, patient, params, fmt, err)
    )
    if made is None:
        sys.exit(FAILED)
    content, count = made
    output.write_bytes(content)
    err.print(
        f"The log extract of Patient/{patient} ({count:,} accesses) is in {output}.",
        highlight=False,
    )


@audit.command()
@click.option(
    "--retention-days",
    type=click.IntRange(min=1),
    default=None,
    help="Keep this many days [default: FLODE_AUDIT_RETENTION_DAYS, or 5 × 366].",
)
@click.option("--force", is_flag=True, help="Allow a retention shorter than five years.")
@_data_dir
@_database_url
def prune(
    retention_days: int | None, force: bool, data_dir: Path | None, database_url: str | None
) -> None:
    """Remove the entries older than the retention (at least five years, DOMAIN.md L4)."""
    from flode.audit.commands import prune_log
    from flode.audit.prune import too_short
    from flode.config import Config

    days = retention_days if retention_days is not None else Config().audit_retention_days
    if too_short(days) and not force:
        raise click.UsageError(
            f"a retention of {days} days is shorter than the five years the law asks for "
            "(HSLF-FS 2016:40, DOMAIN.md L4); give --force if the legal owner decided so"
        )
    ctx = operator("prune", None)
    sys.exit(with_database(data_dir, database_url, lambda conn: prune_log(conn, ctx, days, err)))


@audit.command()
@click.option("--from", "start", required=True, help="The first day (or time) of the period.")
@click.option("--to", "end", required=True, help="The last day (or time) of the period.")
@click.option("--care-unit", default=None, help="Entries of this care unit (HSA-id) only.")
@click.option(
    "--size",
    type=click.IntRange(min=0),
    default=20,
    help="How many entries to draw at random, besides the flagged ones [default: 20].",
)
@click.option("--seed", default=None, help="Draw an earlier sample again [default: a new one].")
@click.option(
    "--flag",
    "flags",
    multiple=True,
    help="Take every entry with any of these flags (repeat) [default: any flag].",
)
@_format
@_reviewer
@_data_dir
@_database_url
def sample(
    start: str,
    end: str,
    care_unit: str | None,
    size: int,
    seed: str | None,
    flags: tuple[str, ...],
    fmt: str,
    reviewer: str | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Draw a sample of a period for a systematic review: every flagged entry, and a random
    draw of the others spread over users and patients (logged as a review)."""
    from flode.audit.commands import sample_log
    from flode.audit.sample import Plan
    from flode.fhir.errors import FhirError

    try:
        plan = Plan.of(start, end, care_unit, size, seed, flags)
    except FhirError as exc:
        raise click.UsageError(str(exc)) from None
    ctx = operator("sample", reviewer)
    sys.exit(
        with_database(
            data_dir, database_url, lambda conn: sample_log(conn, ctx, plan, fmt, out, err)
        )
    )


@audit.command()
@click.option("--entry", "entries", multiple=True, required=True, help="An entry (repeat).")
@click.option(
    "--outcome",
    required=True,
    help="What you concluded: no-remark, justified, follow-up or incident.",
)
@click.option("--comment", default=None, help="Why, and what follows.")
@click.option(
    "--reviewer",
    required=True,
    envvar="FLODE_REVIEWER_HSA_ID",
    help="Your HSA-id, recorded as the reviewer [env: FLODE_REVIEWER_HSA_ID].",
)
@click.option("--care-unit", default=None, help="The care unit you review for (HSA-id).")
@click.option("--care-provider", default=None, help="The care provider (HSA-id).")
@_format
@_data_dir
@_database_url
def result(
    entries: tuple[str, ...],
    outcome: str,
    comment: str | None,
    reviewer: str,
    care_unit: str | None,
    care_provider: str | None,
    fmt: str,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Record what you concluded about entries of the log (logged)."""
    from flode.audit.commands import record_result
    from flode.audit.parameters import Given
    from flode.audit.results import RESULT, RESULT_REPEATED, RESULT_SINGLE

    pairs = [("entry", entry) for entry in entries] + [("outcome", outcome)]
    pairs += [("comment", comment)] if comment else []
    given = Given(RESULT, pairs, RESULT_SINGLE, RESULT_REPEATED)
    ctx = operator("result", reviewer, care_unit, care_provider)
    sys.exit(
        with_database(
            data_dir, database_url, lambda conn: record_result(conn, ctx, given, fmt, out, err)
        )
    )


@audit.command()
@click.option("--by", "by", multiple=True, help="Recorded by this reviewer (HSA-id; repeat).")
@click.option("--entry", "entries", multiple=True, help="About this entry (repeat).")
@click.option("--from", "start", default=None, help="Recorded on or after this date.")
@click.option("--to", "end", default=None, help="Recorded on or before this date.")
@click.option("--outcome", "outcomes", multiple=True, help="With this outcome (repeat).")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, help="At most this many [default: 100]."
)
@_format
@_reviewer
@_data_dir
@_database_url
def results(
    by: tuple[str, ...],
    entries: tuple[str, ...],
    start: str | None,
    end: str | None,
    outcomes: tuple[str, ...],
    limit: int,
    fmt: str,
    reviewer: str | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """The review results recorded, newest first (logged as a review)."""
    from flode.audit.commands import list_results

    params = [("reviewer", value) for value in by] + [("entry", value) for value in entries]
    params += [("from", start)] if start else []
    params += [("to", end)] if end else []
    params += [("outcome", value) for value in outcomes]
    ctx = operator("results", reviewer)
    sys.exit(
        with_database(
            data_dir,
            database_url,
            lambda conn: list_results(conn, ctx, params, limit, fmt, out, err),
        )
    )
