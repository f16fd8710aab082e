"""Index rows of one resource, for every search parameter of its type (docs/storage.md).

The registry says which parameters a type has and evaluates their expressions; each type's
module in `flode.store.params` turns the values into its table's rows. Written in the same
transaction as the version they describe, and replaced on every write.
"""

from __future__ import annotations

from collections.abc import Mapping
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
}
TABLES: tuple[str, ...] = (*COLUMN_TYPES, text.TABLE, "resource_compartment")


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


class Indexer:
    def __init__(self, registry: SearchParameters, definitions: Definitions | None = None) -> None:
        self.registry = registry
        self.text = text.Extractor(definitions or Definitions.load())

    def _composite_rows(self, param: SearchParameter, resource: Mapping[str, Any]) -> list[Any]:
        elements = []
        for node in param.evaluate(resource):
            components = []
            for code, _ in param.components:
                definition = self.registry.get(param.base, code)
                kind = definition.type if definition is not None else "token"
                components.append((kind, param.evaluate_component(code, node)))
            elements.append(components)
        return list(composite.rows(elements))

    def rows(self, resource: Mapping[str, Any]) -> IndexRows:
        params = self.registry.for_type(resource["resourceType"])
        tables = self._tables(resource, params)
        for table, rows in facts.rows(resource).items():
            tables.setdefault(table, []).extend(rows)
        words = (
            self.text.row(resource, narrative="_text" in params) if "_content" in params else None
        )
        contained = resource.get("contained")
        return IndexRows(
            tables,
            self._compartments(resource),
            words,
            self._contained(contained) if contained else (),
        )

    def patients(self, resource: Mapping[str, Any]) -> list[str]:
        """The ids of the patients whose compartments the resource is in."""
        return [id for kind, id in self._compartments(resource) if kind == "Patient"]

    def _contained(self, contained: Any) -> tuple[ContainedRows, ...]:
        """Each contained resource with a type and an id (the first of a repeated id)."""
        found: dict[str, ContainedRows] = {}
        for item in contained if isinstance(contained, list) else ():
            if not isinstance(item, Mapping):
                continue
            kind, id = item.get("resourceType"), item.get("id")
            if not isinstance(kind, str) or not isinstance(id, str) or not id or id in found:
                continue
            params = self.registry.for_type(kind)
            found[id] = ContainedRows(kind, id, self._tables(item, params))
        return tuple(found.values())

    def _tables(
        self, resource: Mapping[str, Any], params: Mapping[str, SearchParameter]
    ) -> dict[str, list[tuple[Any, ...]]]:
        tables: dict[str, list[tuple[Any, ...]]] = {}
        for code, param in params.items():
            module = MODULES.get(param.type)
            if module is None or code in ON_RESOURCE or code in NOT_INDEXED or code in FULL_TEXT:
                continue
            if param.type == "composite":
                found = self._composite_rows(param, resource)
            else:
                found = module.rows(param.evaluate(resource))
            if found:
                table: str = module.TABLE
                tables.setdefault(table, []).extend((code, *row) for row in dict.fromkeys(found))
        return tables

    def _compartments(self, resource: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The Patient compartments the resource belongs to (a Patient is in its own)."""
        resource_type = resource["resourceType"]
        found: dict[tuple[str, str], None] = {}
        if resource_type == "Patient" and isinstance(resource.get("id"), str):
            found[("Patient", resource["id"])] = None
        for code in self.registry.compartment(resource_type):
            param = self.registry.get(resource_type, code)
            if param is None:
                continue
            nodes: list[Node] = param.evaluate(resource)
            for target_type, target_id, *_ in reference.rows(nodes):
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
    for module in MODULES.values():
        if table == module.TABLE:
            columns: tuple[str, ...] = module.COLUMNS
            return columns
    raise KeyError(table)
