"""Where `$import` may read files from, and the reading: NDJSON files over http(s) or from the
import directory, and the manifests of Bulk Data exports ("ping and pull",
https://github.com/smart-on-fhir/bulk-import/blob/master/import-pnp.md).

A URL chosen by a client makes the server reach into its own network (server-side request
forgery, OWASP SSRF), so only hosts on the operator's allow-list are fetched
(`FLODE_IMPORT_ALLOWED_HOSTS`, checked by flode.events.endpoints before every request and
every redirect), and `file:` URLs only name files inside `FLODE_IMPORT_DIR` (none by default).
The access token of the kick-off is sent with a request only when it goes to this server's
own origin (its export files): never to another host, whatever a redirect says.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

import httpx
import orjson

from flode.bulk.import_request import Input
from flode.events.endpoints import EndpointPolicy

NDJSON = "application/fhir+ndjson"
MAX_REDIRECTS = 5
MAX_JSON_BYTES = 64 * 1024 * 1024
"""The largest manifest or status answer read."""
FILE_SUFFIXES = (".ndjson", ".ndjson.gz")
PULL_SECONDS = 24 * 3600.0
"""How long an import waits at most for the export it pulls to complete."""


class FetchFailed(Exception):
    """A file or manifest that could not be read; the message says which and why."""


def origin(url: str) -> str:
    """scheme://host:port of a URL (the default port spelled out), '' if it has none."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
    except ValueError:
        return ""
    host = (parts.hostname or "").lower()
    return f"{parts.scheme.lower()}://{host}:{port}" if host else ""


class SourcePolicy:
    """What `$import` may read: allow-listed hosts and the import directory."""

    def __init__(self, allowed_hosts: Sequence[str], directory: Path | None) -> None:
        self.endpoints = EndpointPolicy(allowed_hosts)
        self.directory = None if directory is None else directory.resolve()

    def refuse(self, url: str) -> str | None:
        """Why `url` may not be read; None if it may."""
        try:
            scheme = urlsplit(url).scheme.lower()
        except ValueError:
            return f"'{url}' is not a valid URL"
        if scheme == "file":
            try:
                self.path(url)
            except FetchFailed as exc:
                return str(exc)
            return None
        if scheme not in ("http", "https"):
            return f"'{url}' is neither an http(s) nor a file URL"
        reason = self.endpoints.listed(url)
        return None if reason is None else f"'{url}' may not be fetched: {reason}"

    def path(self, url: str) -> Path:
        """The file a `file:` URL names, inside the import directory."""
        if self.directory is None:
            raise FetchFailed(
                f"'{url}': file URLs are refused: the server has no import directory "
                "(FLODE_IMPORT_DIR)"
            )
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise FetchFailed(f"'{url}' is not a file URL of this server (file:///path)")
        path = Path(url2pathname(unquote(parts.path))).resolve()
        if not path.is_relative_to(self.directory):
            raise FetchFailed(f"'{url}' is outside the server's import directory")
        if not path.name.endswith(FILE_SUFFIXES):
            raise FetchFailed(f"'{url}' is not a {' or '.join(FILE_SUFFIXES)} file")
        return path


@dataclass(frozen=True, slots=True)
class Fetched:
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: Any


def _digest(path: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            sha.update(block)
            size += len(block)
    return size, sha.hexdigest()


class Fetcher:
    """Reads the files and manifests of one import job."""

    def __init__(
        self,
        policy: SourcePolicy,
        client: httpx.AsyncClient,
        *,
        max_bytes: int,
        own_base: str,
        bearer: str | None,
    ) -> None:
        self.policy = policy
        self.client = client
        self.max_bytes = max_bytes
        self.own = origin(own_base)
        self.bearer = bearer

    def _headers(self, url: str, accept: str, extra: dict[str, str]) -> dict[str, str]:
        headers = {"Accept": accept, "Accept-Encoding": "gzip, identity", **extra}
        if self.bearer and self.own and origin(url) == self.own:
            headers["Authorization"] = f"Bearer {self.bearer}"
        return headers

    @asynccontextmanager
    async def _open(
        self,
        method: str,
        url: str,
        accept: str,
        body: Any = None,
        extra: dict[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """The answer to a request, its redirects followed (each target checked anew)."""
        for _ in range(MAX_REDIRECTS + 1):
            reason = self.policy.refuse(url)
            if reason is not None:
                raise FetchFailed(reason)
            content = None if body is None else orjson.dumps(body)
            headers = self._headers(url, accept, extra or {})
            if content is not None:
                headers["Content-Type"] = "application/fhir+json"
            try:
                request = self.client.build_request(method, url, headers=headers, content=content)
                response = await self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise FetchFailed(
                    f"'{url}' could not be read: {exc or type(exc).__name__}"
                ) from None
            location = response.headers.get("location")
            if response.is_redirect and location:
                await response.aclose()
                url = urljoin(url, location)
                if response.status_code == 303:
                    method, body = "GET", None
                continue
            try:
                yield response
            except httpx.HTTPError as exc:
                raise FetchFailed(
                    f"'{url}' could not be read: {exc or type(exc).__name__}"
                ) from None
            finally:
                await response.aclose()
            return
        raise FetchFailed(f"'{url}' redirects more than {MAX_REDIRECTS} times")

    async def download(self, url: str, target: Path) -> Fetched:
        """An input's NDJSON: a `file:` URL's file where it is, anything else fetched into
        `target`, at most `max_bytes` as transferred."""
        if urlsplit(url).scheme.lower() == "file":
            path = self.policy.path(url)
            try:
                size, sha256 = await asyncio.to_thread(_digest, path)
            except OSError as exc:
                raise FetchFailed(f"'{url}' cannot be read: {exc.strerror or exc}") from None
            if size > self.max_bytes:
                raise FetchFailed(f"'{url}' is larger than {self.max_bytes} bytes")
            return Fetched(path, size, sha256)
        async with self._open("GET", url, NDJSON) as response:
            if response.status_code != 200:
                raise FetchFailed(f"'{url}' answered HTTP {response.status_code}")
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_bytes:
                raise FetchFailed(f"'{url}' is larger than {self.max_bytes} bytes")
            sha = hashlib.sha256()
            size = 0
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                async for block in response.aiter_raw():
                    size += len(block)
                    if size > self.max_bytes:
                        raise FetchFailed(f"'{url}' is larger than {self.max_bytes} bytes")
                    sha.update(block)
                    out.write(block)
        return Fetched(target, size, sha.hexdigest())

    async def json(
        self, method: str, url: str, body: Any = None, extra: dict[str, str] | None = None
    ) -> Answer:
        """A JSON answer (a manifest, a status, an OperationOutcome); `body` None if it has
        none."""
        accept = "application/json" if method == "GET" else "application/fhir+json"
        async with self._open(method, url, accept, body, extra) as response:
            data = b""
            async for block in response.aiter_bytes():
                data += block
                if len(data) > MAX_JSON_BYTES:
                    raise FetchFailed(f"'{url}' answered more than {MAX_JSON_BYTES} bytes")
        try:
            parsed = orjson.loads(data) if data.strip() else None
        except orjson.JSONDecodeError:
            parsed = None
        return Answer(response.status_code, response.headers, parsed)


def _why(answer: Answer, url: str, doing: str) -> FetchFailed:
    issues = answer.body.get("issue") if isinstance(answer.body, dict) else None
    said = "; ".join(
        str(i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code"))
        for i in issues or []
        if isinstance(i, dict)
    )
    return FetchFailed(
        f"{doing} '{url}' answered HTTP {answer.status}" + (f": {said}" if said else "")
    )


def _retry_after(headers: httpx.Headers) -> float:
    raw = headers.get("retry-after", "")
    if raw.strip().isdigit():
        seconds = float(raw)
    else:
        try:
            seconds = parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError):
            seconds = 2.0
    return min(max(seconds, 0.5), 60.0)


def inputs_of(manifest: Any, url: str) -> list[Input]:
    """The files of an export's completion manifest (export.html#response---complete-status)."""
    output = manifest.get("output") if isinstance(manifest, dict) else None
    if not isinstance(output, list):
        raise FetchFailed(f"'{url}' answered no Bulk Data manifest (no 'output' array)")
    found = []
    for item in output:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) for k in ("type", "url")
        ):
            raise FetchFailed(f"The manifest of '{url}' has an output without type and url")
        found.append(Input(item["type"], urljoin(url, item["url"])))
    return found


async def pull(
    fetcher: Fetcher,
    export_url: str,
    export_type: str,
    parameters: Sequence[dict[str, Any]],
    status_url: str | None,
    started: Callable[[str], Awaitable[None]],
) -> list[Input]:
    """The files of the export `export_url` names: its manifest (`static`), or the manifest
    of the export it starts with a POST kick-off (`dynamic`), polled at `status_url` (given
    when a restarted job already started it; `started` is told the URL when it starts it)."""
    if export_type == "static":
        answer = await fetcher.json("GET", export_url)
        if answer.status != 200:
            raise _why(answer, export_url, "The manifest at")
        return inputs_of(answer.body, export_url)
    if status_url is None:
        body = {"resourceType": "Parameters", "parameter": list(parameters)}
        answer = await fetcher.json("POST", export_url, body, {"Prefer": "respond-async"})
        if answer.status == 200:
            return inputs_of(answer.body, export_url)
        location = answer.headers.get("content-location")
        if answer.status != 202 or not location:
            raise _why(answer, export_url, "The export kick-off at")
        status_url = urljoin(export_url, location)
        await started(status_url)
    deadline = asyncio.get_running_loop().time() + PULL_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        answer = await fetcher.json("GET", status_url)
        if answer.status == 200:
            return inputs_of(answer.body, status_url)
        if answer.status != 202:
            raise _why(answer, status_url, "The export status at")
        await asyncio.sleep(_retry_after(answer.headers))
    raise FetchFailed(f"The export at '{status_url}' did not complete in {PULL_SECONDS:.0f} s")
