"""Reading a request body within the configured size limit."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from flode.api.negotiation import check_content_type
from flode.fhir import json
from flode.fhir.errors import bad_request, error


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> Exception:
    return error(413, "too-costly", f"The request body is larger than the limit of {limit} bytes")


async def read_json(request: Request, limit: int) -> Any:
    raw = await read_body(request, limit)
    if not raw.strip():
        raise bad_request("The request body is empty; a FHIR resource is required")
    return json.loads(raw)


async def read_optional_json(request: Request, limit: int) -> Any:
    """The JSON body of a request, its Content-Type checked; None when it has none (an
    operation invoked by POST without a Parameters body)."""
    raw = await read_body(request, limit)
    if not raw.strip():
        return None
    check_content_type(request)
    return json.loads(raw)
