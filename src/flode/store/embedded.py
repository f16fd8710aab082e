"""The embedded PostgreSQL (pgserver: real PostgreSQL binaries in a wheel) in a data directory,
and the lock that keeps two `flode serve` processes off one data directory."""

from __future__ import annotations

import fcntl
import logging
import os
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

PGDATA = "pgdata"


class AlreadyRunning(Exception):
    pass


class DataDirLock:
    """An exclusive lock on the data directory, held for the life of `flode serve`.

    An OS file lock (flock) is released by the kernel when the process dies, so a crash never
    leaves a stale lock behind.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "flode.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise AlreadyRunning(
                f"Flöde is already running on data directory {self.path.parent} "
                f"(pid {holder}). Stop it first, or give this one another --data-dir."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class EmbeddedPostgres:
    """PostgreSQL in `<data_dir>/pgdata`, started on demand and shared between processes.

    pgserver counts the processes using one data directory and stops the server when the last
    one lets go, so `flode load` can run beside `flode serve`.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / PGDATA).resolve()
        self._server: Any = None

    def start(self) -> str:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            from pgserver import postgres_server  # only the embedded mode needs it

            self._server = postgres_server.get_server(self.pgdata, cleanup_mode="stop")
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._forget_dead_processes()
            self._server.cleanup()
            self._server = None

    def _forget_dead_processes(self) -> None:
        """A process killed without cleaning up stays on pgserver's list of users of the data
        directory, and the server would then never be stopped. Drop such processes first."""
        import psutil

        server = self._server
        with server._lock:
            pids = server.global_process_id_list.get()
            alive = [pid for pid in pids if psutil.pid_exists(pid)]
            if alive != pids:
                server.global_process_id_list.put(alive)
