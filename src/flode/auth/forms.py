"""Reading `application/x-www-form-urlencoded` bodies, the only body OAuth 2.0 endpoints take
(RFC 6749 §3.2): small, each parameter at most once."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from flode.auth.errors import invalid_request

MAX_FORM_BYTES = 64 * 1024


async def read_form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise invalid_request("send the parameters as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise invalid_request(f"the request body is larger than {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise invalid_request("the request body is not UTF-8") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise invalid_request(f"parameter '{name}' is given more than once")
        form[name] = value
    return form


def query(request: Request) -> dict[str, str]:
    """The query parameters, each at most once (RFC 6749 §3.1)."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in params:
            raise invalid_request(f"parameter '{name}' is given more than once")
        params[name] = value
    return params
