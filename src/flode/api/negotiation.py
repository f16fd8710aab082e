"""Content negotiation (https://hl7.org/fhir/R4/http.html#mime-type): `_format`, `Accept`,
`Content-Type`, `_pretty` and `Prefer`."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from flode.fhir.errors import bad_request, error

FHIR_JSON = "application/fhir+json"
JSON = "application/json"
JSON_PATCH = "application/json-patch+json"

_FORMAT_ALIASES = {"json": FHIR_JSON, FHIR_JSON: FHIR_JSON, JSON: JSON}
_XML = {"xml", "text/xml", "application/xml", "application/fhir+xml", "html", "text/html", "ttl"}
# Parameters every interaction accepts and that never reach it.
FORMAT_PARAMS = ("_format", "_pretty")


def _media_types(header: str) -> list[str]:
    return [part.split(";")[0].strip().lower() for part in header.split(",") if part.strip()]


def response_type(request: Request) -> str:
    """The media type to answer with; 406 for a format Flöde does not speak (XML, for now)."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        # An unencoded '+' (`_format=application/fhir+json`, as the spec writes it) arrives
        # as a space.
        fmt = fmt.lower().split(";")[0].strip().replace(" ", "+")
        if fmt in _FORMAT_ALIASES:
            return _FORMAT_ALIASES[fmt]
        if fmt in _XML:
            raise error(406, "not-supported", f"_format={fmt} is not supported; use json")
        raise bad_request(f"Unknown _format '{fmt}'; use json", "_format")
    accept = request.headers.get("accept")
    if not accept:
        return FHIR_JSON
    types = _media_types(accept)
    for media_type in types:
        if media_type in (FHIR_JSON, "application/*", "*/*"):
            return FHIR_JSON
        if media_type == JSON:
            return JSON
        if media_type == "application/json+fhir":  # the DSTU2 name, still sent by some clients
            return FHIR_JSON
    raise error(
        406,
        "not-supported",
        f"Cannot answer with any of '{accept}': Flöde speaks {FHIR_JSON} and {JSON}",
    )


def check_content_type(request: Request, allowed: tuple[str, ...] = (FHIR_JSON, JSON)) -> None:
    content_type = request.headers.get("content-type")
    found = _media_types(content_type)[0] if content_type else None
    if found in allowed or (found == "application/json+fhir" and FHIR_JSON in allowed):
        return
    raise error(
        415,
        "not-supported",
        f"Content-Type '{content_type}' is not supported here; send {' or '.join(allowed)}",
    )


def pretty(request: Request) -> bool:
    return request.query_params.get("_pretty", "false").lower() == "true"


@dataclass(frozen=True, slots=True)
class Prefer:
    """The `Prefer` header (RFC 7240) as FHIR uses it."""

    return_: str = "representation"
    strict: bool = False

    @classmethod
    def of(cls, request: Request) -> Prefer:
        return_, strict = "representation", False
        for header in request.headers.getlist("prefer"):
            for part in header.split(","):
                key, _, value = part.strip().partition("=")
                value = value.strip().strip('"')
                if key.strip().lower() == "return" and value in (
                    "minimal",
                    "representation",
                    "OperationOutcome",
                ):
                    return_ = value
                elif key.strip().lower() == "handling":
                    strict = value == "strict"
        return cls(return_, strict)


def version_from_etag(value: str | None, header: str) -> int | None:
    """The version in an ETag-style header: W/"3", "3" or 3."""
    if value is None:
        return None
    text = value.strip()
    text = text[2:] if text.startswith("W/") else text
    text = text.strip('"')
    if not text.isdigit() or len(text) > 9:
        raise bad_request(f"{header} must name a version like W/\"3\", not '{value}'", header)
    return int(text)
