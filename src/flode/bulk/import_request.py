"""What an `$import` kick-off asks for, from its body (no I/O).

Three forms are understood, all of NDJSON (`application/fhir+ndjson`) files:

- a FHIR `Parameters` resource as HAPI FHIR's `$import` takes it: `inputFormat`,
  `inputSource`, `storageDetail` (`type` `https` or `file`) and one `input` part per file,
  with `type` and `url`;
- the Bulk Data Import "ping and pull" kick-off
  (https://github.com/smart-on-fhir/bulk-import/blob/master/import-pnp.md): `exportUrl` (an
  export kick-off URL, or with `exportType` `static` a manifest's URL) and any export
  kick-off parameters to pass on (`_type`, `_since`, …), as `Parameters` or a JSON object;
- a JSON object naming the files: the import manifest draft's `input: [{type, url}]`
  (https://github.com/smart-on-fhir/bulk-import/blob/master/import-manifest.md), or an export's
  completion manifest itself, `output: [{type, url}]`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flode.bulk.export import OUTPUT_FORMATS
from flode.fhir.errors import FhirError, Issue, bad_request, error

INPUT_FORMAT = "application/fhir+ndjson"
EXPORT_TYPES = ("dynamic", "static")
STORAGE_TYPES = ("https", "http", "file")
# storageDetail parts that change nothing here (HAPI FHIR's batch size hint).
_IGNORED_STORAGE = frozenset({"type", "maxBatchResourceCount", "contentEncoding"})


@dataclass(frozen=True, slots=True)
class Input:
    type: str
    url: str


@dataclass(frozen=True, slots=True)
class ImportRequest:
    inputs: tuple[Input, ...] = ()
    input_source: str | None = None
    export_url: str | None = None
    export_type: str = "dynamic"
    export_parameters: tuple[dict[str, Any], ...] = ()
    """The `Parameters.parameter` entries to pass on to the export kick-off."""
    warnings: tuple[Issue, ...] = ()

    @property
    def types(self) -> frozenset[str] | None:
        """The types the import writes, or None when the export it pulls decides."""
        if self.export_url is None:
            return frozenset(i.type for i in self.inputs)
        named = [
            t.strip()
            for p in self.export_parameters
            if p.get("name") == "_type"
            for t in str(p.get("valueString", "")).split(",")
            if t.strip()
        ]
        return frozenset(named) or None


def _value(parameter: dict[str, Any]) -> Any:
    return next((v for k, v in parameter.items() if k.startswith("value")), None)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"'{name}' needs a non-empty string value", name)
    return value.strip()


def _format(value: Any) -> None:
    # An unencoded '+' arrives as a space.
    if _text(value, "inputFormat").replace(" ", "+") not in OUTPUT_FORMATS:
        raise bad_request(
            f"inputFormat '{value}' is not supported: use {INPUT_FORMAT}", "inputFormat"
        )


def _storage_type(value: Any) -> None:
    if _text(value, "storageDetail.type") not in STORAGE_TYPES:
        raise error(
            400,
            "not-supported",
            f"storageDetail type '{value}' is not supported: files are fetched over https "
            "(or http) or read from the server's import directory (file)",
            "storageDetail.type",
        )


def _input(type_: Any, url: Any, known: frozenset[str], where: str) -> Input:
    name = _text(type_, f"{where}.type")
    if name not in known:
        raise bad_request(f"{where}.type '{name}' is not a FHIR R4 resource type", where)
    return Input(name, _text(url, f"{where}.url"))


def _parts(parameter: dict[str, Any], name: str) -> dict[str, Any]:
    parts = parameter.get("part")
    if not isinstance(parts, list):
        raise bad_request(f"'{name}' needs parts", name)
    found: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise bad_request(f"Every part of '{name}' needs a name", name)
        found[part["name"]] = _value(part)
    return found


def _from_parameters(body: dict[str, Any], known: frozenset[str]) -> ImportRequest:
    inputs: list[Input] = []
    source = export_url = export_type = None
    passed: list[dict[str, Any]] = []
    formatted = False
    for parameter in body.get("parameter", []):
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if not isinstance(name, str):
            raise bad_request("Every parameter needs a name", "Parameters.parameter")
        if name == "inputFormat":
            _format(_value(parameter))
            formatted = True
        elif name == "inputSource":
            source = _text(_value(parameter), name)
        elif name == "storageDetail":
            _storage(_parts(parameter, name))
        elif name == "input":
            parts = _parts(parameter, name)
            inputs.append(_input(parts.get("type"), parts.get("url"), known, "input"))
        elif name == "exportUrl":
            export_url = _text(_value(parameter), name)
        elif name == "exportType":
            export_type = _text(_value(parameter), name)
        else:
            passed.append(parameter)
    if inputs and not formatted:
        raise bad_request(f"'inputFormat' is required: {INPUT_FORMAT}", "inputFormat")
    return _checked(inputs, source, export_url, export_type, passed)


def _storage(parts: dict[str, Any]) -> None:
    if "type" in parts:
        _storage_type(parts["type"])
    for name in parts:
        if name not in _IGNORED_STORAGE:
            raise error(
                400,
                "not-supported",
                f"storageDetail.{name} is not supported (credentials are not taken: list the "
                "host on the server's allow-list, or put the files in its import directory)",
                "storageDetail",
            )


def _from_object(body: dict[str, Any], known: frozenset[str]) -> ImportRequest:
    if "exportUrl" in body:
        passed = []
        for name, value in body.items():
            if name in ("exportUrl", "exportType", "inputSource"):
                continue
            for one in value if isinstance(value, list) else [value]:
                passed.append({"name": name, "valueString": _text(one, name)})
        source = body.get("inputSource")
        return _checked(
            [],
            None if source is None else _text(source, "inputSource"),
            _text(body["exportUrl"], "exportUrl"),
            None if body.get("exportType") is None else _text(body["exportType"], "exportType"),
            passed,
        )
    warnings: list[Issue] = []
    if "input" in body:
        if "inputFormat" not in body:
            raise bad_request(f"'inputFormat' is required: {INPUT_FORMAT}", "inputFormat")
        _format(body["inputFormat"])
        storage = body.get("storageDetail")
        if storage is not None:
            _storage(storage if isinstance(storage, dict) else {"type": storage})
        items, where = body["input"], "input"
    elif "output" in body:
        items, where = body["output"], "output"
        if body.get("deleted"):
            warnings.append(
                Issue(
                    "warning",
                    "not-supported",
                    "The manifest's 'deleted' files are not imported: deletions are not applied",
                    ("deleted",),
                )
            )
    else:
        raise bad_request(
            "The body of an $import is a Parameters resource, or a JSON object with "
            "'exportUrl', 'input' or (an export manifest) 'output'"
        )
    if not isinstance(items, list):
        raise bad_request(f"'{where}' must be an array", where)
    inputs = [
        _input(item.get("type"), item.get("url"), known, where)
        if isinstance(item, dict)
        else _input(None, None, known, where)
        for item in items
    ]
    source = body.get("inputSource")
    found = _checked(inputs, None if source is None else _text(source, "inputSource"), None, None)
    return ImportRequest(found.inputs, found.input_source, warnings=tuple(warnings))


def _checked(
    inputs: list[Input],
    source: str | None,
    export_url: str | None,
    export_type: str | None,
    passed: Iterable[dict[str, Any]] = (),
) -> ImportRequest:
    passed = list(passed)
    if export_url is None:
        if export_type is not None:
            raise bad_request("'exportType' goes with 'exportUrl'", "exportType")
        if passed:
            names = ", ".join(sorted({str(p.get("name")) for p in passed}))
            raise bad_request(f"Not $import parameters: {names}", names)
        if not inputs:
            raise bad_request("An $import needs at least one input (type and url)", "input")
        return ImportRequest(tuple(inputs), source)
    if inputs:
        raise bad_request("An $import takes either 'input' files or an 'exportUrl', not both")
    if export_type is not None and export_type not in EXPORT_TYPES:
        raise bad_request(f"exportType must be 'dynamic' or 'static', not '{export_type}'")
    if export_type == "static" and passed:
        raise bad_request("A static export (a manifest) takes no export kick-off parameters")
    return ImportRequest(
        (), source, export_url, export_type or "dynamic", tuple(passed), warnings=()
    )


def parse(body: Any, known: frozenset[str]) -> ImportRequest:
    """The import a kick-off body asks for; 400 for anything else (nothing is imported)."""
    if not isinstance(body, dict):
        raise bad_request("The body of an $import must be a JSON object")
    kind = body.get("resourceType")
    try:
        if kind == "Parameters":
            return _from_parameters(body, known)
        if kind is not None:
            raise bad_request(f"The body of an $import cannot be a {kind}")
        return _from_object(body, known)
    except FhirError:
        raise
    except (AttributeError, TypeError):
        raise bad_request("The body of the $import is not of the form it names") from None
