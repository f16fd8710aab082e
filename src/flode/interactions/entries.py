"""The entries of a transaction or batch Bundle, checked before anything runs: method and URL
split into a path and query parameters, the resource (a JSON Patch travels as a Binary), and the
conditions (`ifNoneExist`, `ifMatch`, `ifNoneMatch`, `ifModifiedSince`)
(https://hl7.org/fhir/R4/bundle-definitions.html#Bundle.entry.request)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from flode.access import policy
from flode.context import RequestContext
from flode.fhir import json
from flode.fhir.dates import parse_instant
from flode.fhir.errors import FhirError, Issue, bad_request
from flode.interactions.create import prepare_create
from flode.interactions.services import Services
from flode.interactions.update import (
    prepare_conditional_update,
    prepare_update,
)
from flode.interactions.write import check_type, conditional_criteria

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
JSON_PATCH = "application/json-patch+json"


@dataclass
class Entry:
    """One checked entry: its request URL split into path segments and query parameters, and
    for a write the resource (validated) or the JSON Patch."""

    index: int
    name: str
    """How errors name the entry (see `label`)."""
    method: str
    url: str
    full_url: str | None
    path: tuple[str, ...]
    params: list[tuple[str, str]] = field(default_factory=list)
    resource: dict[str, Any] | None = None
    operations: Any = None
    if_match: int | None = None
    if_none_exist: list[tuple[str, str]] | None = None
    if_none_match: str | None = None
    if_modified_since: datetime | None = None

    @property
    def resource_type(self) -> str:
        return self.path[0]

    @property
    def conditional(self) -> bool:
        """A conditional create or update, whose identity is found by searching."""
        return self.if_none_exist is not None or (self.method == "PUT" and len(self.path) == 1)


def label(index: int, raw: Any) -> str:
    """How an entry is named in errors: its index, request and fullUrl, as far as it has them."""
    request = raw.get("request") if isinstance(raw, dict) else None
    method, url = (
        (request.get("method"), request.get("url")) if isinstance(request, dict) else ("", "")
    )
    full_url = raw.get("fullUrl") if isinstance(raw, dict) else None
    where = f"Bundle.entry[{index}]"
    if isinstance(method, str) and isinstance(url, str) and method and url:
        where += f" ({method} {url}"
        where += f", fullUrl {full_url})" if isinstance(full_url, str) else ")"
    return where


@contextmanager
def about(index: int, name: str) -> Iterator[None]:
    """Name the entry in every issue of a failure while processing it."""
    try:
        yield
    except FhirError as exc:
        where = f"Bundle.entry[{index}]"
        issues = [
            Issue(
                issue.severity,
                issue.code,
                f"{name}: {issue.diagnostics}",
                (where, *(e for e in issue.expression if e != where)),
            )
            for issue in exc.issues
        ]
        raise FhirError(exc.status, issues) from None


def _string(container: dict[str, Any], key: str, where: str) -> str | None:
    value = container.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise bad_request(f"{key} must be a non-empty string", f"{where}.{key}")
    return value


def _split(url: str, base_url: str) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    if base_url and url.startswith(base_url + "/"):
        url = url[len(base_url) + 1 :]
    elif "://" in url.partition("?")[0]:
        raise bad_request(f"'{url}' is not a URL of this server; use one relative to its base")
    path, _, query = url.partition("?")
    segments = tuple(unquote(part) for part in path.strip("/").split("/") if part)
    params = parse_qsl(query, keep_blank_values=True)
    if any("\x00" in part for part in (*segments, *(p for item in params for p in item))):
        raise bad_request("The url holds a NUL character (%00), which no FHIR value may")
    return segments, [(k, v) for k, v in params if k not in ("_format", "_pretty")]


def _criteria(raw: str) -> list[tuple[str, str]]:
    found = parse_qsl(raw.split("?", 1)[1] if "?" in raw else raw, keep_blank_values=True)
    if not found:
        raise bad_request("ifNoneExist must hold search criteria like 'identifier=sys|123'")
    return found


def _version(raw: str | None) -> int | None:
    """The version in an ETag: W/"3", "3" or 3."""
    if raw is None:
        return None
    text = raw.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 9:
        raise bad_request(f"ifMatch must name a version like W/\"3\", not '{raw}'", "ifMatch")
    return int(text)


def _json_patch(resource: Any) -> Any:
    """The JSON Patch a PATCH entry carries as a Binary (http.html#patch)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        raise bad_request(
            "A PATCH entry carries its JSON Patch in a Binary resource "
            f"(contentType {JSON_PATCH}); FHIRPath Patch is not supported",
            "resource",
        )
    content_type = str(resource.get("contentType", "")).split(";")[0].strip()
    if content_type != JSON_PATCH:
        raise bad_request(f"The Binary of a PATCH entry must have contentType {JSON_PATCH}")
    try:
        return json.loads(base64.b64decode(str(resource.get("data", "")), validate=True))
    except (binascii.Error, ValueError):
        raise bad_request("The Binary of a PATCH entry must hold base64 data") from None


def read_kind(path: tuple[str, ...]) -> str | None:
    """Which read interaction a GET URL names, or None if none."""
    shapes = {
        0: "search-system",
        1: "history-system" if path[:1] == ("_history",) else "search",
        2: "history-type" if path[1:] == ("_history",) else "read",
        3: "history-instance" if path[2:] == ("_history",) else None,
        4: "vread" if path[2:3] == ("_history",) else None,
    }
    return shapes.get(len(path))


def parse_entry(services: Services, ctx: RequestContext, index: int, raw: Any) -> Entry:
    """Check an entry and prepare its work, without I/O (400, 404 or 422 on failure)."""
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise bad_request("An entry must be a JSON object", where)
    request = raw.get("request")
    if not isinstance(request, dict):
        raise bad_request("request (method and url) is required", f"{where}.request")
    method = request.get("method")
    if method not in METHODS:
        raise bad_request(
            f"request.method must be one of {', '.join(METHODS)}, not {method!r}",
            f"{where}.request.method",
        )
    url = _string(request, "url", f"{where}.request")
    if url is None:
        raise bad_request("request.url is required", f"{where}.request.url")
    full_url = _string(raw, "fullUrl", where)
    path, params = _split(url, ctx.base_url)
    if not path and method not in ("GET", "HEAD"):
        raise bad_request("request.url names no resource type", f"{where}.request.url")
    entry = Entry(index, label(index, raw), method, url, full_url, path, params)
    resource = raw.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise bad_request(f"A {method} entry needs a resource", f"{where}.resource")
    if method in ("PUT", "PATCH", "DELETE"):
        entry.if_match = _version(_string(request, "ifMatch", f"{where}.request"))
    kind = path[0] if path else ""
    if method == "POST":
        if len(path) != 1 or params:
            raise bad_request("A POST entry's url is a resource type, e.g. 'Patient'")
        entry.resource = prepare_create(services, kind, resource)
        condition = _string(request, "ifNoneExist", f"{where}.request")
        if condition is not None:
            entry.if_none_exist = _criteria(condition)
            conditional_criteria(services, kind, entry.if_none_exist)
    elif method == "PUT" and len(path) == 2 and not params:
        entry.resource = prepare_update(services, kind, path[1], resource)
    elif method == "PUT" and len(path) == 1 and params:
        entry.resource = prepare_conditional_update(services, kind, params, resource)
    elif method == "PATCH" and len(path) == 2 and not params:
        check_type(services, kind)
        entry.operations = _json_patch(resource)
    elif method == "DELETE" and len(path) == 2 and not params:
        check_type(services, kind)
    elif method == "DELETE" and len(path) == 1 and params:
        check_type(services, kind)
        conditional_criteria(services, kind, params)
    elif method in ("GET", "HEAD") and read_kind(path) is not None:
        if kind not in ("", "_history"):
            check_type(services, kind)
        entry.if_none_match = _string(request, "ifNoneMatch", f"{where}.request")
        since = _string(request, "ifModifiedSince", f"{where}.request")
        entry.if_modified_since = None if since is None else parse_instant(since, "ifModifiedSince")
    else:
        raise bad_request(f"{method} {url} is not an interaction a Bundle entry can hold here")
    if method in _WRITES:
        _check_access(ctx, kind, _WRITES[method])
    return entry


# The SMART action of each write (GET entries run the read and search interactions, which check
# their own access).
_WRITES = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}


def _check_access(ctx: RequestContext, resource_type: str, action: str) -> None:
    """A Bundle entry's write needs a scope that reaches every resource of its type: a token
    confined to a patient or to criteria writes one resource at a time, where each write is
    checked against them."""
    policy.require(ctx, resource_type, action)
    if not policy.unrestricted(ctx, resource_type, action):
        raise policy.forbidden(
            f"Writing {resource_type} in a Bundle needs a scope that reaches every "
            f"{resource_type}; with this token, write it on its own"
        )
