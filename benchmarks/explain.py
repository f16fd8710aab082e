"""`python -m benchmarks.explain [--patients N]`: the query plans behind the search benchmark.

Starts Flöde on a loaded data set (run the search benchmark first), has PostgreSQL log every
statement with its parameters while one request of each query runs, then prints
`EXPLAIN (ANALYZE, BUFFERS)` of each SQL statement those requests ran (the parameters put in
as literals, as a custom plan sees them), slowest first. The server's own SQL stays where it
is: nothing here needs to know it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from benchmarks import loader, loadgen, policy, search
from benchmarks.server import FlodeServer

_ENTRY = re.compile(r"^\S+ \S+ \S+ \[\d+\] (LOG|DETAIL):  ", re.MULTILINE)
_STATEMENT = re.compile(r"duration: ([\d.]+) ms  (?:execute|bind) [^:]*: (.*)", re.DOTALL)
_PARAMETER = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*')")
_SKIPPED = ("BEGIN", "COMMIT", "ROLLBACK", "SET ", "RESET ", "SHOW ", "WITH RECURSIVE typeinfo")


@dataclass(frozen=True, slots=True)
class Statement:
    query: str
    duration_ms: float
    sql: str


def statements(log: str) -> list[tuple[float, str]]:
    """(duration, SQL with its parameters as literals) of each logged execution."""
    found: list[tuple[float, str]] = []
    parts = _ENTRY.split(log)
    # split() gives [text before, kind, text, kind, text, ...]
    entries = list(zip(parts[1::2], parts[2::2], strict=True))
    for i, (kind, text) in enumerate(entries):
        match = _STATEMENT.match(text) if kind == "LOG" else None
        if match is None:
            continue
        sql = match.group(2).strip()
        if i + 1 < len(entries) and entries[i + 1][0] == "DETAIL":
            sql = _literals(sql, dict(_PARAMETER.findall(entries[i + 1][1])))
        if not sql.startswith(_SKIPPED):
            found.append((float(match.group(1)), sql))
    return found


def _literals(sql: str, values: dict[str, str]) -> str:
    return re.sub(r"\$(\d+)\b", lambda m: values.get(m.group(1), m.group()), sql)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _read_from(path: Path, start: int) -> str:
    with path.open(encoding="utf-8", errors="replace") as log:
        log.seek(start)
        return log.read()


async def capture(server: FlodeServer, path: Path, queries: list[search.Query]) -> list[Statement]:
    conn = await server.connect()
    found: list[Statement] = []
    try:
        for query in queries:
            start = _size(path)
            await conn.execute("SET log_min_duration_statement = -1")
            await conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
            await conn.execute("ALTER SYSTEM SET log_parameter_max_length = -1")
            await conn.execute("SELECT pg_reload_conf()")
            await asyncio.sleep(0.3)
            await search.probe(server.port, query.paths[min(1, len(query.paths) - 1)])
            await conn.execute("ALTER SYSTEM RESET log_min_duration_statement")
            await conn.execute("ALTER SYSTEM RESET log_parameter_max_length")
            await conn.execute("SELECT pg_reload_conf()")
            await asyncio.sleep(0.3)
            for duration, sql in statements(_read_from(path, start)):
                if "pg_reload_conf" in sql or "log_min_duration" in sql:
                    continue
                found.append(Statement(query.name, duration, sql))
    finally:
        await conn.close()
    return found


async def explain(server: FlodeServer, statement: Statement) -> str:
    conn = await server.connect()
    try:
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement.sql)
    except Exception as exc:  # a statement that cannot be explained is reported, not fatal
        return f"(cannot explain: {exc})"
    finally:
        await conn.close()
    return "\n".join(row[0] for row in rows)


async def main_async(server: FlodeServer, console: Console, top: int) -> None:
    log = server.data_dir / "pgdata" / "log"
    found = await capture(server, log, search.queries())
    for query in dict.fromkeys(s.query for s in found):
        mine = sorted((s for s in found if s.query == query), key=lambda s: -s.duration_ms)
        for statement in mine[:top]:
            console.rule(f"{escape(query)}: {statement.duration_ms:.2f} ms")
            console.print(escape(statement.sql), soft_wrap=True)
            console.print(escape(await explain(server, statement)), soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain", description=__doc__)
    parser.add_argument("--patients", type=int, default=100, help="the data set [100]")
    parser.add_argument("--cache", type=Path, default=None, help="where data sets are kept")
    parser.add_argument(
        "--top", type=int, default=2, help="statements per query, slowest first [2]"
    )
    parser.add_argument(
        "--clinician",
        action="store_true",
        help="search as the clinician of `python -m benchmarks policy` (run it first), so the "
        "plans include the Swedish access rules",
    )
    args = parser.parse_args(argv)
    console = Console(width=200)
    directory = loader.data_dir(args.cache or loader.default_cache(), args.patients)
    if not loader.is_loaded(directory):
        console.print(
            f"No loaded {args.patients}-patient data set in {directory}: run "
            f"`python -m benchmarks search --patients {args.patients}` first."
        )
        return 1
    server = FlodeServer(None, data_dir=directory)
    try:
        server.start()
        if args.clinician:
            loadgen.TOKEN = policy.clinician_token(server)
        asyncio.run(main_async(server, console, args.top))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
