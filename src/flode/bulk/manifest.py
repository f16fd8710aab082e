"""The completion manifest of an export
(https://hl7.org/fhir/uv/bulkdata/export.html#response---complete-status)."""

from __future__ import annotations

from typing import Any

from flode.bulk.jobs import ExportJob
from flode.fhir.dates import format_instant

REQUIRES_ACCESS_TOKEN = True
"""A file is served only with the token of the client that started the export (or an
administrator's): see `flode.bulk.export.file`."""


def file_url(base_url: str, job: ExportJob, name: str) -> str:
    return f"{base_url}/$export/{job.id}/{name}"


def manifest(job: ExportJob, base_url: str) -> dict[str, Any]:
    def items(kind: str) -> list[dict[str, Any]]:
        return [
            {"type": f.type, "url": file_url(base_url, job, f.name), "count": f.count}
            for f in job.files
            if f.kind == kind and f.count
        ]

    body: dict[str, Any] = {
        "transactionTime": format_instant(job.selection.transaction_time),
        "request": job.request,
        "requiresAccessToken": REQUIRES_ACCESS_TOKEN,
        "output": items("output"),
    }
    if job.selection.since is not None and job.level == "system":
        body["deleted"] = items("deleted")
    body["error"] = items("error")
    return body
