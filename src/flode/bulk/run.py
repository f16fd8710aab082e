"""One export run: the selected resources, type by type and batch by batch, into NDJSON files.

Shared by the server's background jobs (which save the cursor after every batch, to resume
after a restart) and by `flode export` (which shows it as progress).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson

from flode.access import policy
from flode.access.protected import MASK_ALL, Masking
from flode.access.touched import accesses, patients_of_keys
from flode.audit import append
from flode.bulk import selection as sel
from flode.bulk.ndjson import NdjsonFiles, OutFile
from flode.context import RequestContext
from flode.fhir.bundle import bundle
from flode.store.search import SearchCompiler

BATCH = 5000
"""Resources read at most per batch: each batch is one query, one write and one saved cursor."""
FIRST_BATCH = 500
BATCH_BYTES = 8 * 1024 * 1024
# Entries per line of a `deleted` file: each line is one transaction Bundle.
DELETED_PER_BUNDLE = 500


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a run is: the index of the type it is at (`len(types)` for the deletions that
    follow them) and the last id written of that type."""

    type_index: int = 0
    after: str = ""
    done: int = 0


@dataclass(frozen=True, slots=True)
class Step:
    cursor: Cursor
    touched: list[OutFile]
    written: int


def _deleted_bundle(resource_type: str, ids: list[str]) -> str:
    entries: list[dict[str, Any]] = [
        {"request": {"method": "DELETE", "url": f"{resource_type}/{id}"}} for id in ids
    ]
    body = bundle("transaction", entries, [])
    del body["link"]
    return orjson.dumps(body).decode()


async def run(
    conn: sel.Connection,
    selection: sel.Selection,
    files: NdjsonFiles,
    cursor: Cursor,
    compiler: SearchCompiler | None = None,
    batch: int = BATCH,
    ctx: RequestContext | None = None,
    masking: Masking = MASK_ALL,
) -> AsyncGenerator[Step, None]:
    """Write the selection from `cursor` on, of what `ctx` may read, patients with protected
    identity as `masking` says (flode.access.protected: masked unless told otherwise); yields
    after every batch made durable. Stopping the iteration between steps loses nothing that a
    step reported."""
    types = selection.types
    limit = min(batch, FIRST_BATCH)
    while cursor.type_index < len(types):
        resource_type = types[cursor.type_index]
        rows = await sel.batch(conn, selection, resource_type, cursor.after, limit, compiler, ctx)
        touched: list[OutFile] = []
        if rows:
            lines = [masking.text(content) for _, content in rows]
            touched = await asyncio.to_thread(files.write, "output", resource_type, lines)
            if ctx is not None and not ctx.trusted:
                # The access log (L4): one entry per patient whose data the batch exported.
                found = await patients_of_keys(conn, [(resource_type, id) for id, _ in rows])
                await append(conn, ctx, accesses(found, "export"))
        if len(rows) < limit:
            cursor = Cursor(cursor.type_index + 1, "", cursor.done + len(rows))
            limit = min(batch, FIRST_BATCH)
        else:
            cursor = Cursor(cursor.type_index, rows[-1][0], cursor.done + len(rows))
            # As many as make about BATCH_BYTES: a batch of Binaries holds fewer.
            size = sum(len(line) for line in lines) / len(lines)
            limit = max(1, min(batch, int(BATCH_BYTES / max(size, 1))))
        yield Step(cursor, touched, len(rows))
    if cursor.type_index == len(types) and selection.since is not None:
        # Deleted resources (export.html: the manifest's `deleted`) at system level only, of
        # the types `ctx` reads without restriction: a deleted resource has no index rows left
        # to place it in a patient's compartment or match a scope's criteria.
        touched = []
        for resource_type in types if selection.level == "system" else ():
            if ctx is not None and not policy.unrestricted(ctx, resource_type, "r"):
                continue
            ids = await sel.deleted(conn, selection, resource_type)
            lines = [
                _deleted_bundle(resource_type, ids[i : i + DELETED_PER_BUNDLE])
                for i in range(0, len(ids), DELETED_PER_BUNDLE)
            ]
            if lines:
                touched += await asyncio.to_thread(files.write, "deleted", "Bundle", lines)
        yield Step(Cursor(len(types) + 1, "", cursor.done), touched, 0)
