"""`$import` as a client runs it, and the servers it reads from: a real HTTP server on the
loopback that serves NDJSON files (and can hold a request until told to answer), and one that
plays a Bulk Data export server (kick-off, status, manifest, files)."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving import serving

from .flow import manifest

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
NDJSON = "application/fhir+ndjson"


def ndjson(resources: Sequence[dict[str, Any] | str], *, gz: bool = False) -> bytes:
    """NDJSON of the resources (a str is a line as it is)."""
    text = b"".join(
        (r.encode() if isinstance(r, str) else orjson.dumps(r)) + b"\n" for r in resources
    )
    return gzip.compress(text) if gz else text


def parameters(inputs: Sequence[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    """A HAPI FHIR style `$import` Parameters body of (type, url) inputs."""
    body: list[dict[str, Any]] = [
        {"name": "inputFormat", "valueCode": extra.pop("input_format", NDJSON)},
        {"name": "inputSource", "valueUri": "http://example.org/source"},
    ]
    storage = extra.pop("storage", None)
    if storage is not None:
        body.append({"name": "storageDetail", "part": [{"name": "type", "valueCode": storage}]})
    for resource_type, url in inputs:
        body.append(
            {
                "name": "input",
                "part": [
                    {"name": "type", "valueCode": resource_type},
                    {"name": "url", "valueUri": url},
                ],
            }
        )
    return {"resourceType": "Parameters", "parameter": body}


async def kick_off(
    client: httpx.AsyncClient, body: Any, headers: dict[str, str] | None = None
) -> str:
    """Start an import; the status URL."""
    response = await client.post("$import", json=body, headers={**ASYNC, **(headers or {})})
    assert response.status_code == 202, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    return response.headers["content-location"]


async def result(client: httpx.AsyncClient, status_url: str) -> dict[str, Any]:
    """Poll until the import is done; its result document (checked as a manifest is)."""
    return await manifest(client, status_url)


async def run(client: httpx.AsyncClient, body: Any) -> dict[str, Any]:
    return await result(client, await kick_off(client, body))


async def errors(client: httpx.AsyncClient, found: dict[str, Any]) -> list[dict[str, Any]]:
    """The OperationOutcomes of every error file of a result."""
    out = []
    for item in found["error"]:
        response = await client.get(item["url"])
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(NDJSON)
        lines = [orjson.loads(line) for line in response.text.splitlines()]
        assert len(lines) == item["count"]
        out += lines
    return out


@dataclass
class Files:
    """What the file server serves, by path (`/files/Patient.ndjson`), and what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    held: dict[str, threading.Event] = field(default_factory=dict)
    """Paths whose requests wait until their event is set."""
    asked: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    """(method, path, headers) of every request."""
    export_polls: int = 1
    """How many status requests of the export answer 202 before the manifest."""
    export_parameters: list[Any] = field(default_factory=list)
    base: str = ""

    def add(self, name: str, content: bytes) -> str:
        self.files[f"/files/{name}"] = content
        return f"{self.base}/files/{name}"

    def hold(self, name: str) -> threading.Event:
        event = threading.Event()
        self.held[f"/files/{name}"] = event
        return event

    def manifest(self, outputs: Sequence[tuple[str, str]]) -> dict[str, Any]:
        return {
            "transactionTime": "2026-01-01T00:00:00Z",
            "request": f"{self.base}/export",
            "requiresAccessToken": False,
            "output": [{"type": t, "url": u} for t, u in outputs],
            "error": [],
        }


def _app(files: Files) -> Starlette:
    async def serve(request: Request) -> Response:
        path = request.url.path
        files.asked.append((request.method, path, dict(request.headers)))
        event = files.held.get(path)
        if event is not None:
            await asyncio.to_thread(event.wait, 60)
        if path not in files.files:
            return Response("not here", 404)
        return Response(files.files[path], 200, media_type=NDJSON)

    async def kick_off(request: Request) -> Response:
        files.asked.append((request.method, request.url.path, dict(request.headers)))
        if request.headers.get("prefer") != "respond-async":
            return JSONResponse({"resourceType": "OperationOutcome", "issue": []}, 400)
        files.export_parameters.append(orjson.loads(await request.body()))
        return Response(status_code=202, headers={"Content-Location": f"{files.base}/status"})

    async def status(request: Request) -> Response:
        files.asked.append((request.method, request.url.path, dict(request.headers)))
        if files.export_polls > 0:
            files.export_polls -= 1
            return Response(status_code=202, headers={"Retry-After": "1", "X-Progress": "50%"})
        outputs = [
            ("Patient" if "Patient" in p else "Observation", f"{files.base}{p}")
            for p in sorted(files.files)
        ]
        return JSONResponse(files.manifest(outputs))

    async def manifest(request: Request) -> Response:
        outputs = [("Patient", f"{files.base}{p}") for p in sorted(files.files)]
        return JSONResponse(files.manifest(outputs))

    return Starlette(
        routes=[
            Route("/files/{name}", serve, methods=["GET"]),
            Route("/export", kick_off, methods=["POST"]),
            Route("/status", status, methods=["GET"]),
            Route("/manifest.json", manifest, methods=["GET"]),
        ]
    )


@contextmanager
def file_server() -> Iterator[Files]:
    """A file server on the loopback while the block runs (the address is allow-listed)."""
    files = Files()
    with serving(_app(files)) as port:
        files.base = f"http://127.0.0.1:{port}"
        try:
            yield files
        finally:
            for event in files.held.values():
                event.set()
