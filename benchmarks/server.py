"""`flode serve --no-demo` for one benchmark run: its own data directory (a fresh temporary
one, or a kept one with data loaded before), so its own embedded PostgreSQL, a free port, and a
CPU of its own."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import asyncpg

from benchmarks import loadgen
from benchmarks.loadgen import HOST

# Straight to 127.0.0.1, whatever http_proxy says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_START_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the parent pid follows it.
    return int(stat.rsplit(")", 1)[1].split()[1])


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def affinity(pid: int) -> set[int] | None:
    try:
        return os.sched_getaffinity(pid)
    except OSError:
        return None


def describe_cpus(cpus: set[int] | None) -> str:
    if cpus is None:
        return "?"
    return ",".join(str(c) for c in sorted(cpus))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _setting(value: str, unit: str | None) -> str:
    """A pg_settings value readable: shared_buffers is counted in 8kB pages, say."""
    if unit == "8kB" and value.isdigit():
        return f"{int(value) * 8 // 1024}MB"
    return f"{value}{unit or ''}"


@dataclass(frozen=True, slots=True)
class PostgresInfo:
    version: str
    settings: dict[str, str]


class FlodeServer:
    """`flode serve` as a subprocess, pinned to `server_cpu`.

    PostgreSQL is started by the server, so at first it inherits the server's CPU. Given
    `postgres_cpus`, the postmaster and its processes are moved there once the server is up;
    backends forked later inherit that from the postmaster. Only the Python server process then
    stays on `server_cpu`.
    """

    def __init__(
        self,
        server_cpu: int | None,
        *,
        postgres_cpus: set[int] | None = None,
        data_dir: Path | None = None,
        flags: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`data_dir`: keep the data there (and reuse what is there); a temporary directory,
        removed at `stop()`, when None. `flags`: more options of `flode serve`; `env`: more
        environment variables for it."""
        self.server_cpu = server_cpu
        self._flags = list(flags)
        self.env = dict(env or {})
        self.postgres_cpus = set(postgres_cpus) if postgres_cpus is not None else None
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}/fhir"
        self.keep = data_dir is not None
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="flode-bench-"))
        self.log_path = self.data_dir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: int | None = None

    @property
    def flags(self) -> list[str]:
        """Options beyond the data directory and port (no demo data). Authentication stays
        on unless they say otherwise: every request carries an operator's token, as a
        module's would."""
        return list(self._flags)

    def token(self) -> str:
        """An operator's access token for this server, signed with its data directory's key."""
        from flode.auth.local import issue_local
        from flode.config import Config

        root = self.base_url.removesuffix("/fhir")
        return issue_local(Config(data_dir=self.data_dir), root, lifetime=24 * 3600)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        cpu = self.server_cpu

        def pin() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        self._log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        command = [sys.executable, "-m", "flode", "serve", "--data-dir", str(self.data_dir)]
        command += ["--port", str(self.port), "--no-demo", *self.flags]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            preexec_fn=pin,
            # Out of the terminal's process group: a Ctrl-C reaches the benchmark only, which
            # then stops the server exactly once, through stop().
            start_new_session=True,
        )
        self._wait_until_ready()
        loadgen.TOKEN = self.token()
        if self.postgres_cpus is not None:
            for pid in self.postgres_processes():
                with contextlib.suppress(OSError):  # a process that just ended
                    os.sched_setaffinity(pid, self.postgres_cpus)

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"flode serve exited with {self._process.returncode}:\n{self.log()}"
                )
            try:
                with _DIRECT.open(f"{self.base_url}/metadata", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"flode serve did not answer within {_START_TIMEOUT_S:.0f} s:\n{self.log()}"
        )

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def _postmaster_line(self, index: int) -> str | None:
        try:
            lines = (self.data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        return lines[index].strip() if len(lines) > index else None

    def postmaster_pid(self) -> int | None:
        line = self._postmaster_line(0)
        return int(line) if line and line.isdigit() else None

    def postgres_processes(self) -> list[int]:
        postmaster = self.postmaster_pid()
        return process_tree(postmaster) if postmaster is not None else []

    async def connect(self) -> asyncpg.Connection:
        """A connection of our own to the server's PostgreSQL (its Unix socket)."""
        port, socket_dir = self._postmaster_line(3), self._postmaster_line(4)
        if not port or not socket_dir:
            raise RuntimeError("PostgreSQL is not running (no postmaster.pid)")
        return await asyncpg.connect(
            host=socket_dir, port=int(port), user="postgres", database="postgres", timeout=10
        )

    async def postgres_info(self) -> PostgresInfo | None:
        """The running PostgreSQL's version and the settings that matter most here."""
        names = ("synchronous_commit", "fsync", "shared_buffers", "max_connections")
        try:
            conn = await self.connect()
        except (OSError, RuntimeError, asyncpg.PostgresError):
            return None
        try:
            version = await conn.fetchval("SHOW server_version")
            rows = await conn.fetch(
                "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])",
                list(names),
            )
        finally:
            await conn.close()
        settings = {r["name"]: _setting(r["setting"], r["unit"]) for r in rows}
        return PostgresInfo(str(version), settings)

    def stop(self) -> None:
        """Ctrl-C the server, so it stops its PostgreSQL; then remove the data directory unless
        it is kept."""
        process = self._process
        postmaster = self.postmaster_pid()
        try:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.terminate()
                    try:
                        process.wait(_STOP_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
            if postmaster is not None:
                deadline = time.monotonic() + _STOP_TIMEOUT_S
                while _alive(postmaster) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _alive(postmaster):
                    print(
                        f"warning: the embedded PostgreSQL (pid {postmaster}) is still running",
                        file=sys.stderr,
                    )
                    return  # keep its data directory: it is still in use
            if not self.keep:
                shutil.rmtree(self.data_dir, ignore_errors=True)
        finally:
            if self._log is not None:
                os.close(self._log)
                self._log = None
            self._process = None

    def __enter__(self) -> FlodeServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
