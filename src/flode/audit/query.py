"""Search parameters of the log (`GET [base]/AuditEvent?…`, `flode audit search`) compiled to
SQL over `audit_event e`.

`patient` (id or Patient/id), `agent` (an HSA-id; `agent:identifier=system|value` for an
HSA-id or a client id), `date` (prefixes, repeatable), `care-unit`, `flag` (also
`_tag=<flag system>|code`), `action`, `outcome`, `subtype`, `purpose`, `_id`,
`_lastUpdated` (the same as `date`: an entry is never updated); comma-separated
values are OR-ed, repeated parameters AND-ed. Paging is by key: `_cursor` is the `seq` of the
last entry of the page before, so pages stay put while new entries arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flode.audit.event import (
    ACT_REASON,
    ACTIONS,
    CLIENT_ID,
    FLAG_SYSTEM,
    HSA_ID,
    INTERACTIONS,
    OUTCOMES,
    subtype_system,
)
from flode.fhir.dates import parse_range
from flode.fhir.errors import bad_request
from flode.interactions.paging import Page
from flode.store.params.common import split_prefix
from flode.store.params.date import range_condition
from flode.store.sql import Args
from flode.text import split_escaped, unescape

CONTROL = ("_count", "_sort", "_cursor", "_total")
SORTS = {"date": False, "-date": True, "_lastUpdated": False, "-_lastUpdated": True}
COLUMNS = (
    "e.seq, e.id, e.recorded, e.patient_id, e.agent_hsa_id, e.client_id, e.care_unit, "
    "e.care_provider, e.purpose, e.interaction, e.action, e.outcome, e.flags, e.content"
)


@dataclass
class Query:
    """A compiled review query."""

    where: list[str] = field(default_factory=list)
    args: Args = field(default_factory=Args)
    descending: bool = True
    count: int = 20
    cursor: int | None = None
    total: bool = False
    unknown: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)
    """The parameters the links repeat: every one understood, but `_cursor`."""
    patients: list[str] = field(default_factory=list)
    """The patients the query names, in order."""

    def page_sql(self, limit: int) -> tuple[str, list[Any]]:
        """The query of a page (after `cursor`) and its arguments."""
        args = Args(*self.args.values)
        where = " AND ".join(f"({w})" for w in self.where) or "true"
        if self.cursor is not None:
            op = "<" if self.descending else ">"
            where += (
                f" AND (e.recorded, e.seq) {op} (SELECT c.recorded, c.seq FROM audit_event c "
                f"WHERE c.seq = {args.add(self.cursor)})"
            )
        order = "DESC" if self.descending else "ASC"
        sql = f"SELECT {COLUMNS} FROM audit_event e WHERE {where} "
        sql += f"ORDER BY e.recorded {order}, e.seq {order} LIMIT {int(limit)}"
        return sql, args.values

    def count_sql(self) -> tuple[str, list[Any]]:
        """How many match, on every page together."""
        where = " AND ".join(f"({w})" for w in self.where) or "true"
        return f"SELECT count(*) FROM audit_event e WHERE {where}", self.args.values


def _parts(name: str, raw: str) -> list[str]:
    """The comma-separated values of a parameter, still escaped (a token splits them again)."""
    parts = split_escaped(raw, ",")
    if not all(parts):
        raise bad_request(f"Empty value in search parameter '{name}'", name)
    return parts


def _values(name: str, raw: str) -> list[str]:
    return [unescape(part) for part in _parts(name, raw)]


def _token(raw: str, system: str) -> str | None:
    """The code of a `code` or `system|code` value; None when the system is another."""
    parts = split_escaped(raw, "|")
    if len(parts) == 1:
        return unescape(parts[0])
    if len(parts) == 2 and unescape(parts[0]) == system and parts[1]:
        return unescape(parts[1])
    return None


def _any(column: str, values: Sequence[str | None], args: Args) -> str:
    wanted = [v for v in values if v is not None]
    return f"{column} = ANY({args.add(wanted)}::text[])" if wanted else "false"


def patient_id(name: str, value: str) -> str:
    """`123`, `Patient/123` or `[base]/Patient/123` → 123."""
    kind, slash, id = value.rpartition("/")
    if slash and kind != "Patient" and not kind.endswith("/Patient"):
        raise bad_request(f"'{name}' names a Patient: 'Patient/123' or '123', not '{value}'", name)
    if not id:
        raise bad_request(f"Empty value in search parameter '{name}'", name)
    return id


def _agent_identifier(name: str, raw: str, args: Args) -> str:
    ors = []
    for value in split_escaped(raw, ","):
        parts = [unescape(p) for p in split_escaped(value, "|")]
        if len(parts) == 1 and parts[0]:
            code = args.add(parts[0])
            ors.append(f"(e.agent_hsa_id = {code} OR e.client_id = {code})")
        elif len(parts) == 2 and parts[1]:
            column = {HSA_ID: "e.agent_hsa_id", CLIENT_ID: "e.client_id"}.get(parts[0])
            ors.append("false" if column is None else f"{column} = {args.add(parts[1])}")
        else:
            raise bad_request(f"'{name}' takes system|value, not '{value}'", name)
    return " OR ".join(ors)


def date_condition(name: str, raw: str, args: Args, column: str = "e.recorded") -> str:
    """The instant `column` against a (prefixed, comma-separated) date value: an instant is
    the range [t, t + 1 µs), compared as search.html#prefix says."""
    ors = []
    for value in split_escaped(raw, ","):
        prefix, text = split_prefix(name, unescape(value))
        low, high = parse_range(text, name)
        if prefix == "ap":
            ors.append(range_condition("ap", low, high, args, f"{column} {column}"))
        elif prefix in ("gt", "sa"):
            ors.append(f"{column} >= {args.add(high)}")
        elif prefix in ("lt", "eb"):
            ors.append(f"{column} < {args.add(low)}")
        elif prefix == "ge":
            ors.append(f"{column} >= {args.add(low)}")
        elif prefix == "le":
            ors.append(f"{column} < {args.add(high)}")
        else:
            within = f"{column} >= {args.add(low)} AND {column} < {args.add(high)}"
            ors.append(within if prefix == "eq" else f"NOT ({within})")
    return " OR ".join(f"({o})" for o in ors)


def _coded(
    name: str, allowed: frozenset[str], system: Callable[[str], str]
) -> Callable[[str, Args], str]:
    def condition(raw: str, args: Args) -> str:
        codes = []
        for value in _parts(name, raw):
            code = _token(value, system(unescape(value.rpartition("|")[2])))
            if code is not None and code not in allowed:
                raise bad_request(
                    f"'{name}' takes one of {', '.join(sorted(allowed))}, not '{code}'", name
                )
            codes.append(code)
        column = "e.interaction" if name == "subtype" else f"e.{name}"
        return _any(column, codes, args)

    return condition


def _flags(name: str, system: str | None) -> Callable[[str, Args], str]:
    def condition(raw: str, args: Args) -> str:
        wanted = [
            code
            for value in _parts(name, raw)
            if (code := unescape(value) if system is None else _token(value, system)) is not None
        ]
        if not wanted:
            return "false"
        return f"e.flags <> '{{}}' AND e.flags && {args.add(wanted)}::text[]"

    return condition


_PURPOSES = frozenset({"TREAT", "ETREAT", "BTG"})
PARAMETERS: dict[str, Callable[[str, Args], str]] = {
    "patient": lambda raw, args: _any(
        "e.patient_id", [patient_id("patient", v) for v in _values("patient", raw)], args
    ),
    "agent": lambda raw, args: _any("e.agent_hsa_id", _values("agent", raw), args),
    "agent:identifier": lambda raw, args: _agent_identifier("agent:identifier", raw, args),
    "date": lambda raw, args: date_condition("date", raw, args),
    "_lastUpdated": lambda raw, args: date_condition("_lastUpdated", raw, args),
    "care-unit": lambda raw, args: _any(
        "e.care_unit", [_token(v, HSA_ID) for v in _parts("care-unit", raw)], args
    ),
    "flag": _flags("flag", None),
    "_tag": _flags("_tag", FLAG_SYSTEM),
    "action": _coded("action", ACTIONS, lambda _: "http://hl7.org/fhir/audit-event-action"),
    "outcome": _coded("outcome", OUTCOMES, lambda _: "http://hl7.org/fhir/audit-event-outcome"),
    "subtype": _coded("subtype", INTERACTIONS, subtype_system),
    "purpose": _coded("purpose", _PURPOSES, lambda _: ACT_REASON),
    "_id": lambda raw, args: _any("e.id", _values("_id", raw), args),
}


def _control(query: Query, name: str, value: str) -> None:
    if name == "_sort":
        if value not in SORTS:
            raise bad_request(f"_sort takes date or -date, not '{value}'", "_sort")
        query.descending = SORTS[value]
    elif name == "_cursor":
        if not value.isdigit() or len(value) > 18:
            raise bad_request(f"'_cursor' is a position from a next link, not '{value}'")
        query.cursor = int(value)
    elif name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise bad_request("_total takes none, estimate or accurate", "_total")
        query.total = value != "none"


def compile_query(
    params: Sequence[tuple[str, str]],
    default_count: int,
    max_count: int,
    only_patient: str | None = None,
) -> Query:
    """The query of `params`; `only_patient` holds it to one patient's entries."""
    query = Query(
        count=Page.parse(
            [(k, v) for k, v in params if k == "_count"], default_count, max_count
        ).count
    )
    for name, value in params:
        if name in CONTROL:
            _control(query, name, value)
            if name != "_cursor":
                query.kept.append((name, value))
            continue
        condition = PARAMETERS.get(name)
        if condition is None:
            base = name.partition(":")[0]
            if base in PARAMETERS:
                raise bad_request(f"Unknown modifier in search parameter '{name}'", name)
            query.unknown.append(name)
            continue
        query.where.append(condition(value, query.args))
        query.kept.append((name, value))
        if name == "patient":
            query.patients += [patient_id(name, v) for v in _values(name, value)]
    if only_patient is not None:
        query.where.append(f"e.patient_id = {query.args.add(only_patient)}")
    return query


_OFFICIAL = "http://hl7.org/fhir/SearchParameter"
_OWN = "http://flode.example.org/SearchParameter"
SEARCH_PARAMS: tuple[tuple[str, str, str, str], ...] = (
    ("_id", "token", f"{_OFFICIAL}/Resource-id", "The entry's id"),
    ("_lastUpdated", "date", f"{_OFFICIAL}/Resource-lastUpdated", "The same as date"),
    ("_tag", "token", f"{_OFFICIAL}/Resource-tag", f"A flag: {FLAG_SYSTEM}|code"),
    ("action", "token", f"{_OFFICIAL}/AuditEvent-action", "C R U D E"),
    (
        "agent",
        "reference",
        f"{_OFFICIAL}/AuditEvent-agent",
        "The user's HSA-id; agent:identifier=system|value for an HSA-id or a client id",
    ),
    ("care-unit", "token", f"{_OWN}/AuditEvent-care-unit", "The care unit's HSA-id"),
    ("date", "date", f"{_OFFICIAL}/AuditEvent-date", "When the access was recorded"),
    ("flag", "token", f"{_OWN}/AuditEvent-flag", "A flag, e.g. emergency"),
    ("outcome", "token", f"{_OFFICIAL}/AuditEvent-outcome", "0 4 8 12"),
    ("patient", "reference", f"{_OFFICIAL}/clinical-patient", "The patient: id or Patient/id"),
    ("purpose", "token", f"{_OWN}/AuditEvent-purpose", "TREAT, ETREAT or BTG"),
    ("subtype", "token", f"{_OFFICIAL}/AuditEvent-subtype", "The interaction"),
)


# The operations of systematic review (flode.audit.sample, flode.audit.results).
OPERATIONS: tuple[tuple[str, str], ...] = tuple(
    (name, f"http://flode.example.org/OperationDefinition/AuditEvent-{name}")
    for name in ("review-sample", "review-result", "review-results")
)


def capability() -> dict[str, Any]:
    """AuditEvent in the CapabilityStatement: read, search and the review operations, from
    the log itself."""
    return {
        "type": "AuditEvent",
        "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
        "documentation": "Flöde's access log (docs/audit.md): append-only, written by Flöde "
        "alone; read and search only. _sort=date|-date (newest first by default); paging by "
        "the next link.",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "searchParam": [
            {"name": name, "definition": url, "type": kind, "documentation": text}
            for name, kind, url, text in SEARCH_PARAMS
        ],
        "operation": [{"name": name, "definition": url} for name, url in OPERATIONS],
    }
