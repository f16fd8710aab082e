"""The NDJSON files of one export (https://hl7.org/fhir/uv/bulkdata/export.html#file-request):
one resource per line, each file of one type, a new file begun when the current one would grow
past the size limit.

The sizes recorded with each file are what a restart trusts: `restore` cuts every file back to
its recorded size and removes files nothing recorded, so lines written after the last saved
batch are written once more, never twice.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".ndjson"


@dataclass(slots=True)
class OutFile:
    name: str
    kind: str
    """output, deleted or error: the manifest array it is listed in"""
    type: str
    seq: int
    count: int = 0
    bytes: int = 0


def _name(kind: str, resource_type: str, n: int) -> str:
    if kind == "output":
        return f"{resource_type}-{n}{SUFFIX}"
    if kind == "deleted":
        return f"{resource_type}-deleted-{n}{SUFFIX}"
    return f"error-{n}{SUFFIX}"


class NdjsonFiles:
    """Appends lines to the files of one export in `directory` (blocking I/O: run it in a
    thread from async code)."""

    def __init__(self, directory: Path, max_bytes: int, files: Iterable[OutFile] = ()) -> None:
        self.directory = directory
        self.max_bytes = max(1, max_bytes)
        self.files: list[OutFile] = sorted(files, key=lambda f: f.seq)

    def restore(self) -> None:
        """Make the directory hold exactly what `files` records."""
        self.directory.mkdir(parents=True, exist_ok=True)
        known = {f.name: f for f in self.files}
        for path in self.directory.iterdir():
            recorded = known.get(path.name)
            if recorded is None:
                path.unlink()
            elif path.stat().st_size > recorded.bytes:
                os.truncate(path, recorded.bytes)
        for file in self.files:
            path = self.directory / file.name
            if not path.exists() or path.stat().st_size < file.bytes:
                raise OSError(f"export file {path} is shorter than recorded: it cannot resume")

    def _current(self, kind: str, resource_type: str) -> OutFile | None:
        for file in reversed(self.files):
            if file.kind == kind and file.type == resource_type:
                return file
        return None

    def _begin(self, kind: str, resource_type: str) -> OutFile:
        n = sum(1 for f in self.files if f.kind == kind and f.type == resource_type) + 1
        file = OutFile(_name(kind, resource_type, n), kind, resource_type, len(self.files) + 1)
        self.files.append(file)
        return file

    def write(self, kind: str, resource_type: str, lines: Sequence[str]) -> list[OutFile]:
        """Append the lines (JSON without line breaks), durably; the files written to."""
        touched: list[OutFile] = []
        file = self._current(kind, resource_type)
        pending: list[bytes] = []
        size = 0

        def flush(target: OutFile) -> None:
            nonlocal pending, size
            if not pending:
                return
            with (self.directory / target.name).open("ab") as out:
                out.write(b"".join(pending))
                out.flush()
                os.fsync(out.fileno())
            target.count += len(pending)
            target.bytes += size
            if target not in touched:
                touched.append(target)
            pending, size = [], 0

        for line in lines:
            data = line.encode() + b"\n"
            if file is None or (
                file.bytes + size + len(data) > self.max_bytes and file.bytes + size > 0
            ):
                if file is not None:
                    flush(file)
                file = self._begin(kind, resource_type)
            pending.append(data)
            size += len(data)
        if file is not None:
            flush(file)
        return touched

    def remove(self) -> None:
        """Delete the export's files and directory (what a write still under way leaves
        behind, a later clean-up removes)."""
        shutil.rmtree(self.directory, ignore_errors=True)
