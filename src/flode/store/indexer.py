"""Index rows of one resource, for every search parameter of its type (docs/storage.md).

The registry says which parameters a type has and evaluates their expressions; each type's
module in `flode.store.params` turns the values into its table's rows. Written in the same
transaction as the version they describe, and replaced on every write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from flode.access import facts
from flode.fhir.definitions import Definitions
from flode.fhir.search_parameters import SearchParameter, SearchParameters
from flode.store.params import (
    composite,
    date,
    number,
    quantity,
    reference,
    string,
    text,
    token,
    uri,
)
from flode.store.params.common import Node
from flode.store.provenance import PATIENT_EXTENSION

# Parameters stored on `resource` itself rather than in index rows.
ON_RESOURCE = frozenset({"_id", "_lastUpdated"})
# Parameters with a full-text index (`search_text`) rather than rows of values.
FULL_TEXT = text.PARAMS
# Parameters of the registry that nothing indexes yet.
NOT_INDEXED: frozenset[str] = frozenset()

MODULES: Mapping[str, ModuleType] = {
    "token": token,
    "string": string,
    "date": date,
    "number": number,
    "quantity": quantity,
    "reference": reference,
    "uri": uri,
    "composite": composite,
}

# Column types per table, for the arrays one INSERT … SELECT unnest(…) sends per table.
COLUMN_TYPES: Mapping[str, tuple[str, ...]] = {
    token.TABLE: ("text",) * len(token.COLUMNS),
    string.TABLE: ("text", "text"),
    date.TABLE: ("timestamptz", "timestamptz"),
    quantity.TABLE: ("text", "text", "text", "numeric", "numeric", "numeric"),
    reference.TABLE: ("text",) * len(reference.COLUMNS),
    uri.TABLE: ("text",),
    composite.TABLE: (
        "text",
        "text",
        "text",
        "text",
        "text",
        "numeric",
        "numeric",
        "numeric",
        "timestamptz",
        "timestamptz",
    ),
    facts.TABLE: facts.COLUMN_TYPES,
}
TABLES: tuple[str, ...] = (*COLUMN_TYPES, text.TABLE, "resource_compartment")

# The columns after (resource_pk, resource_type, param) per table of COLUMN_TYPES.
ROW_COLUMNS: Mapping[str, tuple[str, ...]] = {
    **{module.TABLE: module.COLUMNS for module in MODULES.values()},
    facts.TABLE: facts.COLUMNS,
}


@dataclass(frozen=True, slots=True)
class ContainedRows:
    """The index rows of one contained resource: its type, its id (without `#`) and its rows
    per search table, as for a resource (no compartments, no full-text row)."""

    resource_type: str
    id: str
    tables: Mapping[str, list[tuple[Any, ...]]]


@dataclass(frozen=True, slots=True)
class IndexRows:
    """Rows per table: (param, *columns) for the search tables; compartment (type, id) pairs;
    the words of the full-text row; the rows of each contained resource."""

    tables: Mapping[str, list[tuple[Any, ...]]]
    compartments: list[tuple[str, str]]
    words: text.TextRow | None = None
    contained: tuple[ContainedRows, ...] = ()


@dataclass(frozen=True, slots=True)
class _Indexed:
    """How one search parameter of a type is indexed: its expression, its table and the
    module function that makes the table's rows of its values."""

    code: str
    param: SearchParameter
    evaluate: Callable[[Any], list[Node]]
    rows: Callable[[list[Node]], list[Any]] | None
    """The module's `rows`; None for a composite (see `components`)."""
    table: str
    roots: frozenset[str] | None
    """The properties the expression starts from: a resource with none of them yields no
    values (None: evaluate always)."""
    components: tuple[tuple[str, str], ...]
    """A composite's (component code, component parameter type)."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """What indexing one resource type takes, worked out once per registry."""

    indexed: tuple[_Indexed, ...]
    always: tuple[int, ...]
    """The positions in `indexed` of the parameters evaluated on every resource."""
    by_root: Mapping[str, tuple[int, ...]]
    """The positions of the other parameters, by each property they start from."""
    compartment: tuple[SearchParameter, ...]
    """The parameters that put the type into a Patient compartment."""
    remembered: frozenset[str]
    """The reference parameters of `indexed` whose rows also decide the compartments."""
    content: bool
    narrative: bool


class Indexer:
    def __init__(self, registry: SearchParameters, definitions: Definitions | None = None) -> None:
        self._registry = registry
        self._plans: dict[str, _Plan] = {}
        self.text = text.Extractor(definitions or Definitions.load())

    @property
    def registry(self) -> SearchParameters:
        return self._registry

    @registry.setter
    def registry(self, registry: SearchParameters) -> None:
        """A new registry (custom SearchParameters changed): the plans are made anew."""
        self._registry = registry
        self._plans = {}

    def _plan(self, resource_type: str) -> _Plan:
        plan = self._plans.get(resource_type)
        if plan is None:
            plan = self._plans[resource_type] = self._make_plan(resource_type)
        return plan

    def _make_plan(self, resource_type: str) -> _Plan:
        params = self.registry.for_type(resource_type)
        compartment = tuple(
            param
            for code in self.registry.compartment(resource_type)
            if (param := self.registry.get(resource_type, code)) is not None
        )
        codes = {param.code for param in compartment}
        indexed = self._indexed(params)
        remembered = (e.code for e in indexed if e.code in codes and e.rows is reference.rows)
        by_root: dict[str, list[int]] = {}
        for position, entry in enumerate(indexed):
            for root in entry.roots or ():
                by_root.setdefault(root, []).append(position)
        return _Plan(
            indexed,
            tuple(position for position, entry in enumerate(indexed) if entry.roots is None),
            {root: tuple(positions) for root, positions in by_root.items()},
            compartment,
            frozenset(remembered),
            "_content" in params,
            "_text" in params,
        )

    def _indexed(self, params: Mapping[str, SearchParameter]) -> tuple[_Indexed, ...]:
        """The parameters with index rows of their own, in the registry's order."""
        found = []
        for code, param in params.items():
            module = MODULES.get(param.type)
            if module is None or code in ON_RESOURCE or code in NOT_INDEXED or code in FULL_TEXT:
                continue
            if param.compiled is None:
                continue  # unsupported: it yields no values
            components = []
            for component, _ in param.components:
                definition = self.registry.get(param.base, component)
                components.append((component, definition.type if definition else "token"))
            found.append(
                _Indexed(
                    code,
                    param,
                    param.compiled.evaluate,
                    None if param.type == "composite" else module.rows,
                    module.TABLE,
                    param.compiled.roots,
                    tuple(components),
                )
            )
        return tuple(found)

    def rows(self, resource: Mapping[str, Any]) -> IndexRows:
        plan = self._plan(resource["resourceType"])
        remembered: dict[str, list[Any]] = {}
        tables = self._tables(resource, plan, remembered)
        for table, rows in facts.rows(resource).items():
            tables.setdefault(table, []).extend(rows)
        words = self.text.row(resource, narrative=plan.narrative) if plan.content else None
        contained = resource.get("contained")
        return IndexRows(
            tables,
            self._compartments(resource, plan, remembered),
            words,
            self._contained(contained) if contained else (),
        )

    def patients(self, resource: Mapping[str, Any]) -> list[str]:
        """The ids of the patients whose compartments the resource is in."""
        plan = self._plan(resource["resourceType"])
        return [id for kind, id in self._compartments(resource, plan, None) if kind == "Patient"]

    def _contained(self, contained: Any) -> tuple[ContainedRows, ...]:
        """Each contained resource with a type and an id (the first of a repeated id)."""
        found: dict[str, ContainedRows] = {}
        for item in contained if isinstance(contained, list) else ():
            if not isinstance(item, Mapping):
                continue
            kind, id = item.get("resourceType"), item.get("id")
            if not isinstance(kind, str) or not isinstance(id, str) or not id or id in found:
                continue
            found[id] = ContainedRows(kind, id, self._tables(item, self._plan(kind), {}))
        return tuple(found.values())

    def _tables(
        self, resource: Mapping[str, Any], plan: _Plan, remembered: dict[str, list[Any]]
    ) -> dict[str, list[tuple[Any, ...]]]:
        """The rows per table; the rows of the parameters that decide the compartments also go
        into `remembered`. (Hot: a parameter whose expression starts from properties the
        resource does not have is not evaluated: it has no values.)"""
        tables: dict[str, list[tuple[Any, ...]]] = {}
        keep = plan.remembered
        selected = set(plan.always)
        by_root = plan.by_root
        for key in resource:
            positions = by_root.get(key)
            if positions is not None:
                selected.update(positions)
        every = plan.indexed
        for position in sorted(selected):  # in the registry's order, as rows always are
            indexed = every[position]
            if indexed.rows is None:
                found = self._composite_rows(indexed, resource)
            else:
                found = indexed.rows(indexed.evaluate(resource))
            if indexed.code in keep:
                remembered[indexed.code] = found
            if found:
                # Each module's rows are distinct already.
                code = (indexed.code,)
                rows = tables.get(indexed.table)
                if rows is None:
                    rows = tables[indexed.table] = []
                rows.extend([code + row for row in found])
        return tables

    def _composite_rows(self, indexed: _Indexed, resource: Mapping[str, Any]) -> list[Any]:
        """`composite.rows` of the parameter's elements, the first component evaluated only
        where the second has a value (most composites of a resource have none: an
        Observation has one kind of value)."""
        components = indexed.components
        if len(components) != 2 or components[0][1] != "token":
            return []  # nothing composite.rows would index
        (first, _), (second, kind) = components
        param = indexed.param
        found = []
        for node in indexed.evaluate(resource):
            values = composite.values(kind, param.evaluate_component(second, node))
            if values:
                codes = composite.codes(param.evaluate_component(first, node))
                found.extend(composite.combine(codes, values))
        return list(dict.fromkeys(found))

    def _compartments(
        self, resource: Mapping[str, Any], plan: _Plan, remembered: Mapping[str, list[Any]] | None
    ) -> list[tuple[str, str]]:
        """The Patient compartments the resource belongs to (a Patient is in its own); with the
        rows `_tables` remembered for it, if it ran."""
        resource_type = resource["resourceType"]
        found: dict[tuple[str, str], None] = {}
        if resource_type == "Patient" and isinstance(resource.get("id"), str):
            found[("Patient", resource["id"])] = None
        for param in plan.compartment:
            if remembered is None or param.code not in plan.remembered:
                rows = reference.rows(param.evaluate(resource))
            else:
                # Not evaluated by `_tables` when the resource has none of its properties.
                rows = remembered.get(param.code, [])
            for target_type, target_id, *_ in rows:
                if target_type == "Patient" and target_id:
                    found[("Patient", target_id)] = None
        if resource_type == "Provenance":
            for patient in _provenance_patients(resource):
                found[("Patient", patient)] = None
        return list(found)


def _provenance_patients(resource: Mapping[str, Any]) -> list[str]:
    """The patients a Provenance Flöde wrote names (flode.store.provenance): its target is
    their data, so it is in their compartments."""
    found = []
    extensions = resource.get("extension")
    for extension in extensions if isinstance(extensions, list) else []:
        if isinstance(extension, dict) and extension.get("url") == PATIENT_EXTENSION:
            value = extension.get("valueReference")
            ref = value.get("reference") if isinstance(value, dict) else None
            if isinstance(ref, str) and ref.startswith("Patient/"):
                found.append(ref.removeprefix("Patient/"))
    return found


def _ctes(parts: list[str]) -> str:
    return "WITH " + ",\n".join(f"w{i} AS ({part})" for i, part in enumerate(parts)) + "\nSELECT 1"


# Every table at once, in one round trip: the resource's rows and those of the resources it
# contained (keys of `resource_contained`, found by the first CTE). For a resource that contains
# nothing the extra cost is one probe of an empty index range.
DELETE_STATEMENT = _ctes(
    [
        "DELETE FROM resource_contained WHERE container_pk = $1 RETURNING pk",
        *(
            f"DELETE FROM {table} WHERE resource_pk = ANY(array_prepend($1::bigint, "
            "ARRAY(SELECT pk FROM w0)))"
            for table in COLUMN_TYPES
        ),
        *(f"DELETE FROM {table} WHERE resource_pk = $1" for table in TABLES[len(COLUMN_TYPES) :]),
    ]
)


def insert_statement(pk: int, resource_type: str, rows: IndexRows) -> tuple[str, list[Any]] | None:
    """One statement that inserts all of a resource's index rows: a single round trip.

    (Deleting the old rows must be a statement of its own: data-modifying CTEs of one statement
    all check unique keys against the same snapshot.)
    """
    args: list[Any] = [pk, resource_type]
    parts: list[str] = []
    if rows is not None:
        for table, table_rows in rows.tables.items():
            if not table_rows:
                continue
            types = ("text", *COLUMN_TYPES[table])
            columns = list(zip(*table_rows, strict=True))
            arrays = []
            for column, sql_type in zip(columns, types, strict=True):
                args.append(list(column))
                arrays.append(f"${len(args)}::{sql_type}[]")
            names = ", ".join(("param", *_columns(table)))
            parts.append(
                f"INSERT INTO {table} (resource_pk, resource_type, {names}) "
                f"SELECT $1, $2, u.* FROM unnest({', '.join(arrays)}) AS u"
            )
        if rows.compartments:
            args.append([c[0] for c in rows.compartments])
            args.append([c[1] for c in rows.compartments])
            parts.append(
                "INSERT INTO resource_compartment "
                "(resource_pk, resource_type, compartment_type, compartment_id) "
                f"SELECT $1, $2, u.* FROM unnest(${len(args) - 1}::text[], ${len(args)}::text[])"
                " AS u"
            )
        if rows.words is not None:
            args.extend(rows.words)
            parts.append(
                f"INSERT INTO {text.TABLE} (resource_pk, resource_type, narrative, content) "
                f"SELECT $1, $2, array_to_tsvector(${len(args) - 1}::text[]), "
                f"array_to_tsvector(${len(args)}::text[])"
            )
        if rows.contained:
            _contained_parts(rows.contained, args, parts)
    return (_ctes(parts), args) if parts else None


def _contained_parts(
    contained: tuple[ContainedRows, ...], args: list[Any], parts: list[str]
) -> None:
    """Insert the contained resources into `resource_contained` and their index rows keyed by
    the `pk` each gets there (joined on the contained id, within the same statement)."""
    keys = f"w{len(parts)}"
    args.append([c.resource_type for c in contained])
    args.append([c.id for c in contained])
    parts.append(
        "INSERT INTO resource_contained (container_pk, resource_type, id) "
        f"SELECT $1, u.* FROM unnest(${len(args) - 1}::text[], ${len(args)}::text[]) AS u "
        "RETURNING pk, id"
    )
    by_table: dict[str, list[tuple[Any, ...]]] = {}
    for item in contained:
        for table, table_rows in item.tables.items():
            by_table.setdefault(table, []).extend(
                (item.id, item.resource_type, *row) for row in table_rows
            )
    for table, table_rows in by_table.items():
        types = ("text", "text", "text", *COLUMN_TYPES[table])
        columns = list(zip(*table_rows, strict=True))
        arrays = []
        for column, sql_type in zip(columns, types, strict=True):
            args.append(list(column))
            arrays.append(f"${len(args)}::{sql_type}[]")
        names = ("resource_type", "param", *_columns(table))
        aliases = [f"c{n}" for n in range(len(names))]
        parts.append(
            f"INSERT INTO {table} (resource_pk, {', '.join(names)}) "
            f"SELECT k.pk, {', '.join(f'u.{a}' for a in aliases)} "
            f"FROM unnest({', '.join(arrays)}) AS u (id, {', '.join(aliases)}) "
            f"JOIN {keys} k ON k.id = u.id"
        )


def _columns(table: str) -> tuple[str, ...]:
    return ROW_COLUMNS[table]
