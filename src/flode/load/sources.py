"""The files a load reads: which paths name them, and their content.

A path is a file or a folder (searched recursively). Loadable files are FHIR JSON (`.json`: a
Bundle or a single resource) and FHIR NDJSON (`.ndjson`: one resource per line, as FHIR Bulk
Data exports write it, https://hl7.org/fhir/uv/bulkdata/), each also gzip-compressed (`.gz`).
NDJSON is read in chunks, so a file of any size loads in bounded memory.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from flode.fhir import json
from flode.fhir.errors import FhirError

SUFFIXES = (".json", ".json.gz", ".ndjson", ".ndjson.gz")
_READ_SIZE = 1 << 20


class SourceError(Exception):
    """A file that cannot be read as FHIR JSON or NDJSON; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Missing:
    """A path given on the command line that names nothing loadable."""

    path: Path
    reason: str


def loadable(path: Path) -> bool:
    return path.name.endswith(SUFFIXES)


def is_ndjson(path: Path) -> bool:
    return path.name.endswith((".ndjson", ".ndjson.gz"))


def find(paths: Sequence[Path]) -> tuple[list[Path], list[Missing]]:
    """The files the paths name (each once, in a stable order) and the paths that name none."""
    found: dict[Path, None] = {}
    missing = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and loadable(p))
            if not files:
                missing.append(Missing(path, f"the folder holds no {', '.join(SUFFIXES)} files"))
            found.update(dict.fromkeys(p.resolve() for p in files))
        elif path.is_file():
            if loadable(path):
                found[path.resolve()] = None
            else:
                missing.append(Missing(path, f"not a {', '.join(SUFFIXES)} file"))
        elif path.exists():
            missing.append(Missing(path, "neither a file nor a folder"))
        else:
            missing.append(Missing(path, "no such file or folder"))
    return list(found), missing


def _open(path: Path) -> BinaryIO:
    return path.open("rb")


def digest(path: Path) -> str:
    """The SHA-256 of the file as stored (compressed files by their compressed bytes)."""
    sha = hashlib.sha256()
    with _open(path) as file:
        while block := file.read(_READ_SIZE):
            sha.update(block)
    return sha.hexdigest()


def read_json(path: Path) -> Any:
    """The JSON document in a `.json` or `.json.gz` file."""
    try:
        with _open(path) as file:
            raw = file.read()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"cannot be read: {exc}") from None
    try:
        return json.loads(raw)
    except FhirError as exc:
        raise SourceError(str(exc).replace("The body is", "The file is")) from None


@dataclass(frozen=True, slots=True)
class Line:
    number: int
    resource: Any


def ndjson_chunks(path: Path, size: int) -> Iterator[tuple[list[Line], int]]:
    """The resources of an NDJSON file in chunks of at most `size`, each with how many bytes
    of the file (as stored) have been read once it was parsed. Blank lines are skipped."""
    with _open(path) as raw:
        stream: Iterable[bytes] = gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw
        chunk: list[Line] = []
        try:
            for number, text in enumerate(stream, start=1):
                if not text.strip():
                    continue
                try:
                    chunk.append(Line(number, json.loads(text)))
                except FhirError as exc:
                    message = str(exc).replace("The body is", "is")
                    raise SourceError(f"line {number} {message}") from None
                if len(chunk) >= size:
                    yield chunk, raw.tell()
                    chunk = []
        except (OSError, EOFError, zlib.error) as exc:
            raise SourceError(f"cannot be read: {exc}") from None
        yield chunk, raw.tell()
