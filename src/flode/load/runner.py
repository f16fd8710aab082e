"""Running a load: worker processes (flode.load.worker) over the files, a progress bar with
files, resources, resources/s and the time left, and every file's result at the end."""

from __future__ import annotations

import multiprocessing
import queue
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from multiprocessing.context import ForkContext, SpawnContext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from flode.load import worker
from flode.load.files import FileResult

# The progress bar is drawn at most this often.
_RENDER_SECONDS = 0.1

STOPPED = "The worker loading it stopped unexpectedly: {reason}"
INTERRUPTED = "Not loaded, or not completely: the load was interrupted (Ctrl-C)"
RUN_AGAIN = "Run the same command again; loaded files are skipped."
LOAD_REFERENCED = (
    "Load the files that hold the referenced resources, or the SubscriptionTopics the "
    "Subscriptions name (in the same command or before), then run the command again."
)


@dataclass(frozen=True, slots=True)
class Options:
    fast: bool = False
    force: bool = False
    workers: int = 2
    concurrency: int = 2


@dataclass(frozen=True, slots=True)
class Outcome:
    results: list[FileResult]
    seconds: float
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def resources(self) -> int:
        return sum(r.resources for r in self.results)

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds > 0 else 0.0


class _Progress:
    """The progress bar: its total is the files' bytes, which is what the time left follows."""

    def __init__(self, console: Console, files: Sequence[Path]) -> None:
        self.started = time.monotonic()
        self.files = len(files)
        self.done = 0
        self.resources = 0
        self.sizes = {str(path): _size(path) for path in files}
        self.read: dict[str, int] = {}
        self.written: dict[str, int] = {}
        self.rendered = 0.0
        # Rendered by `refresh`, without a thread of its own: workers are forked from this
        # process (see `_context`), which must then have no other thread.
        self.bar = Progress(
            TextColumn("[bold]Loading"),
            BarColumn(),
            TextColumn("{task.fields[done]}/{task.fields[files]} files"),
            TextColumn("{task.fields[resources]:,} resources"),
            TextColumn("{task.fields[rate]:,.0f} resources/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        total = sum(self.sizes.values())
        self.task: TaskID = self.bar.add_task(
            "load", total=max(total, 1), done=0, files=self.files, resources=0, rate=0.0
        )

    def advance(self, path: str, resources: int, size: int) -> None:
        self.resources += resources
        self.written[path] = self.written.get(path, 0) + resources
        self.read[path] = self.read.get(path, 0) + size
        self.bar.update(self.task, advance=size)
        self.refresh()

    def finished(self, path: str, deferred: bool) -> None:
        """A file is done: all its bytes are read, or, deferred, none yet (it is loaded again,
        and counted then)."""
        left = 0 if deferred else self.sizes.get(path, 0)
        self.resources -= self.written.pop(path, 0) if deferred else 0
        self.bar.update(self.task, advance=left - self.read.pop(path, 0))
        self.done += 0 if deferred else 1
        self.refresh()

    def refresh(self) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        rate = self.resources / elapsed if elapsed > 0 else 0.0
        self.bar.update(self.task, done=self.done, resources=self.resources, rate=rate)
        if now - self.rendered >= _RENDER_SECONDS:
            self.rendered = now
            self.bar.refresh()


def _context() -> ForkContext | SpawnContext:
    """How worker processes start. Forked, they begin with everything this process has
    imported and read (the whole application and the FHIR definitions: a second or two of
    work each); that is safe only while this process runs no other thread, which `flode load`
    ensures (the progress bar is drawn from this thread). Elsewhere (another platform, or a
    caller with threads of its own) each worker starts a fresh interpreter."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def run(
    database_url: str,
    data_dir: Path,
    files: Sequence[Path],
    options: Options,
    console: Console,
) -> Outcome:
    """Load `files` with worker processes; every file gets a result, whatever happens.

    A file whose conditional reference (`Organization?identifier=…`) matches nothing yet is
    deferred, and loaded again once the others are: Bulk Data exports keep each type in a file
    of its own, and the files that hold the referenced resources may come later. So is a file
    with a Subscription whose topic is not offered yet (flode.load.subscriptions)."""
    started = time.monotonic()
    settings = worker.Settings(
        database_url,
        data_dir,
        options.fast,
        options.force,
        options.concurrency,
        not console.is_terminal,
    )
    results: dict[int, FileResult] = {}
    pending = list(range(len(files)))
    progress = _Progress(console, files)
    current: _Pass | None = None
    try:
        with progress.bar:
            while pending:
                current = _Pass(settings, [str(files[i]) for i in pending], progress, console)
                found = current.run(options.workers)
                for index, result in zip(pending, found, strict=True):
                    results[index] = result
                deferred = [i for i in pending if results[i].status == "deferred"]
                if len(deferred) == len(pending):
                    break  # nothing else was loaded: they will not resolve by trying again
                pending = deferred
    except KeyboardInterrupt:
        if current is not None:
            for position, result in current.results.items():
                results[pending[position]] = result
        for index, path in enumerate(files):
            if index not in results or results[index].status == "deferred":
                results[index] = FileResult(str(path), "interrupted", reason=INTERRUPTED)
        return Outcome([results[i] for i in range(len(files))], time.monotonic() - started, True)
    final = [
        replace(r, status="failed", hint=LOAD_REFERENCED) if r.status == "deferred" else r
        for r in (results[i] for i in range(len(files)))
    ]
    return Outcome(final, time.monotonic() - started)


class _Pass:
    """Worker processes over a list of files, until each has a result."""

    def __init__(
        self, settings: worker.Settings, paths: list[str], progress: _Progress, console: Console
    ) -> None:
        self.settings, self.paths, self.progress, self.console = settings, paths, progress, console
        self.results: dict[int, FileResult] = {}
        self.busy: dict[int, set[int]] = {}
        self.fatal: dict[int, str] = {}

    def run(self, workers: int) -> list[FileResult]:
        context = _context()
        events: Any = context.Queue()
        counter = context.Value("q", 0)
        processes = {
            number: context.Process(
                target=worker.run,
                args=(number, self.settings, self.paths, counter, events),
                name=f"flode-load-{number}",
            )
            for number in range(max(1, min(workers, len(self.paths))))
        }
        self.busy = {number: set() for number in processes}
        for process in processes.values():
            process.start()
        interrupted = False
        try:
            while len(self.results) < len(self.paths):
                try:
                    self._handle(events.get(timeout=0.25))
                except queue.Empty:
                    self.progress.refresh()
                    if not any(process.is_alive() for process in processes.values()):
                        self._drain(events)
                        self._lost(processes)
                        break
                    self._lost(processes)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            for process in processes.values():
                if interrupted and process.is_alive():
                    process.terminate()
            for process in processes.values():
                process.join(timeout=30)
        reason = _reason(self.fatal)
        return [
            self.results.get(index) or FileResult(path, "failed", reason=reason, hint=RUN_AGAIN)
            for index, path in enumerate(self.paths)
        ]

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "log":
            self.console.print(event[1], markup=False, highlight=False, soft_wrap=True)
        elif kind == "start":
            self.busy[event[1]].add(event[2])
        elif kind == "progress":
            self.progress.advance(self.paths[event[1]], event[2], event[3])
        elif kind == "done":
            self.busy[event[1]].discard(event[2])
            result = FileResult(**event[3])
            self.results[event[2]] = result
            self.progress.finished(self.paths[event[2]], result.status == "deferred")
        elif kind == "fatal":
            self.fatal[event[1]] = event[2]

    def _drain(self, events: Any) -> None:
        """Whatever the workers sent before they ended is in the queue now."""
        while True:
            try:
                self._handle(events.get(timeout=0.1))
            except queue.Empty:
                return

    def _lost(self, processes: dict[int, Any]) -> None:
        """Fail the files that workers which died were loading."""
        for number, process in processes.items():
            # A worker that ended normally sent every result before it did.
            if process.is_alive() or process.exitcode == 0 or not self.busy[number]:
                continue
            why = self.fatal.get(number, f"exit code {process.exitcode}")
            for index in self.busy[number]:
                self.results[index] = FileResult(
                    self.paths[index], "failed", reason=STOPPED.format(reason=why), hint=RUN_AGAIN
                )
                self.progress.finished(self.paths[index], deferred=False)
            self.busy[number].clear()


def _reason(fatal: dict[int, str]) -> str:
    if fatal:
        return f"Not loaded: the workers could not start ({next(iter(fatal.values()))})"
    return "Not loaded: every worker stopped before it"
