"""The fast path line by line, for Bulk Data `$import`: NDJSON whose invalid lines are reported,
each with its OperationOutcome, while the other lines are written.

The writing is `FastWriter.write`, exactly as `flode load --fast` writes a chunk (validated,
stamped, indexed, `COPY`ed, announced in the outbox). A chunk is all or nothing, so a line the
writer refuses is taken out and the chunk written again; after the first refusal the chunk's
other lines are validated one by one first, so a file of many bad lines costs each line twice,
not the chunk once per bad line.

A line whose conditional reference (`Practitioner?identifier=…`) matches nothing yet may be
*waited for*: the chunk stops before it, so that the input can go on from that line once the
inputs that hold the referenced resources are loaded (as `flode load` defers a file). So may a
Subscription whose topic is not offered yet: the topic may be in another input.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from flode.access import ownership
from flode.fhir import json
from flode.fhir.errors import FhirError, Issue, operation_outcome
from flode.load import plan, subscriptions
from flode.load.fast import FastWriter, Invalid
from flode.load.files import CHUNK
from flode.load.sources import Line, SourceError

RawLine = tuple[int, bytes | None]
"""A line's number and its bytes (None: longer than the limit)."""


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    outcome: dict[str, Any]


@dataclass(slots=True)
class Step:
    """What one chunk of lines came to."""

    last: int = 0
    """The last line handled (written or refused): the input goes on after it."""
    written: list[tuple[str, str]] = field(default_factory=list)
    patients: set[str] = field(default_factory=set)
    errors: list[LineError] = field(default_factory=list)
    waiting: bool = False
    """Stopped before a line whose conditional reference matches nothing yet."""


def _open(path: Path) -> BinaryIO:
    raw = path.open("rb")
    if raw.read(2) == b"\x1f\x8b":  # gzip, whatever the name says
        raw.seek(0)
        return cast(BinaryIO, gzip.GzipFile(fileobj=raw))
    raw.seek(0)
    return raw


def read_lines(path: Path, after: int, max_line: int, size: int = CHUNK) -> Iterator[list[RawLine]]:
    """The non-blank lines of an NDJSON file (gzip or not) after line `after`, in chunks of at
    most `size`; `OSError`, `EOFError` or `zlib.error` if it cannot be read."""
    with _open(path) as stream:
        chunk: list[RawLine] = []
        number = 0
        while True:
            text = stream.readline(max_line + 1)
            if not text:
                break
            number += 1
            too_long = len(text) > max_line and not text.endswith(b"\n")
            while too_long and text and not text.endswith(b"\n"):
                text = stream.readline(max_line + 1)  # skip the rest of the line
            if number <= after or (not too_long and not text.strip()):
                continue
            chunk.append((number, None if too_long else text))
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _outcome(number: int, what: str, issues: list[Issue]) -> dict[str, Any]:
    where = f"line {number}" + (f" ({what})" if what else "")
    return operation_outcome(
        [Issue(i.severity, i.code, f"{where}: {i.diagnostics}", i.expression) for i in issues]
    )


def _unresolved(error: FhirError) -> bool:
    """Whether another input may hold what the line needs: what its conditional reference
    names, or the topic of a Subscription."""
    return (
        error.status == 412 and "matches no resource" in str(error)
    ) or subscriptions.waits_for_topic(error)


class LineLoader:
    """Writes the lines of one input, of one resource type, through the fast path."""

    def __init__(
        self,
        writer: FastWriter,
        resource_type: str,
        salt: str,
        *,
        owner: ownership.Owner | None = None,
        max_line: int,
    ) -> None:
        self.writer = writer
        self.resource_type = resource_type
        self.salt = salt
        """The SHA-256 of the file: ids derived for resources without one are stable."""
        self.owner = owner
        """The writer's own care unit and provider, which own what it creates (L7)."""
        self.max_line = max_line

    def _plan(self, lines: list[RawLine], step: Step) -> list[plan.Write]:
        writes = []
        for number, text in lines:
            if text is None:
                issue = Issue("error", "too-long", f"longer than {self.max_line} bytes")
                step.errors.append(LineError(number, _outcome(number, "", [issue])))
                continue
            try:
                (write,) = plan.lines([Line(number, json.loads(text))], self.salt)
            except (FhirError, SourceError) as exc:
                message = str(exc).removeprefix(f"line {number}: ").replace("The body is", "is")
                issue = Issue("error", "structure", message)
                step.errors.append(LineError(number, _outcome(number, "", [issue])))
                continue
            if write.resource_type != self.resource_type:
                issue = Issue(
                    "error",
                    "invalid",
                    f"a {write.resource_type} in an input of type {self.resource_type}",
                    ("resourceType",),
                )
                step.errors.append(LineError(number, _outcome(number, "", [issue])))
                continue
            if self.owner is not None:
                ownership.apply(write.resource, self.owner)
            writes.append(write)
        return writes

    async def load(self, lines: list[RawLine], *, wait: bool) -> Step:
        """Write a chunk of lines; with `wait`, stop before the first line whose conditional
        reference matches nothing yet (`Step.waiting`)."""
        step = Step(last=lines[-1][0] if lines else 0)
        writes = self._plan(lines, step)
        for chunk in plan.chunks(writes, CHUNK):
            stop = await self._write(chunk, step, wait)
            if stop is not None:
                step.waiting = True
                step.last = stop - 1
                step.errors = [e for e in step.errors if e.line < stop]
                break
        step.errors.sort(key=lambda e: e.line)
        return step

    async def _write(self, chunk: list[plan.Write], step: Step, wait: bool) -> int | None:
        """Write what of `chunk` can be; the line to stop before, if it waits for one."""
        pending = list(chunk)
        screened = False
        while pending:
            try:
                step.patients |= await self.writer.write(pending)
            except Invalid as exc:
                index = next(i for i, w in enumerate(pending) if w is exc.write)
                number = _number(exc.write)
                if wait and _unresolved(exc.error):
                    # The lines before it are written; it and those after wait.
                    before = pending[:index]
                    stop = await self._write(before, step, wait) if before else None
                    return number if stop is None else stop
                step.errors.append(LineError(number, self._refused(exc.write, exc.error)))
                del pending[index]
                if not screened:
                    pending = self._screen(pending, step)
                    screened = True
                continue
            except FhirError as exc:
                if len(pending) == 1:
                    write = pending[0]
                    step.errors.append(LineError(_number(write), self._refused(write, exc)))
                    return None
                for write in pending:  # which one it was is not said: one at a time
                    stop = await self._write([write], step, wait)
                    if stop is not None:
                        return stop
                return None
            step.written += [w.key for w in pending]
            return None
        return None

    def _screen(self, writes: list[plan.Write], step: Step) -> list[plan.Write]:
        """The writes that validate on their own (those with conditional references, which
        only the writer resolves, are left to it)."""
        now = datetime.now(UTC)
        kept = []
        for write in writes:
            if not write.searches:
                try:
                    self.writer.prepare([write], now)
                except Invalid as exc:
                    step.errors.append(LineError(_number(write), self._refused(write, exc.error)))
                    continue
            kept.append(write)
        return kept

    def _refused(self, write: plan.Write, error: FhirError) -> dict[str, Any]:
        return _outcome(_number(write), f"{write.resource_type}/{write.id}", error.issues)


def _number(write: plan.Write) -> int:
    return int(write.where.removeprefix("line "))
