"""The `flode` command line."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import uvicorn
import uvloop
from rich.console import Console

from flode import __version__, logs
from flode.audit import cli as audit_commands
from flode.auth import cli as auth_commands
from flode.config import Config, SettingError
from flode.events import cli as events_commands
from flode.store.embedded import AlreadyRunning, DataDirLock, EmbeddedPostgres
from flode.store.migrate import MigrationError

console = Console(stderr=True)


def _examples(base: str, config: Config) -> str:
    if config.insecure_dev:
        auth = ""
        get_token = ""
    else:
        auth = '-H "Authorization: Bearer $TOKEN" '
        options = "" if config.data_dir == Path(".flode") else f" --data-dir {config.data_dir}"
        if base != "http://127.0.0.1:8080/fhir":
            options += f" --audience {base}"
        flode = sys.argv[0] if Path(sys.argv[0]).name == "flode" else "flode"
        get_token = (
            "  Every request needs an access token; an administrator's (docs/modules.md):\n"
            f"    export TOKEN=$({flode} token issue{options})\n\n"
        )
    return (
        f"\n  Flöde is serving FHIR R4 at [bold]{base}[/bold]\n\n"
        f"{get_token}"
        "  Try:\n"
        f"    curl -s {base}/metadata | head -c 400\n"
        f"    curl -s {auth}'{base}/Patient?identifier=http://electronichealth.se/identifier/"
        "personnummer|194206119093'\n"
        f"    curl -s -X POST {base}/Patient {auth}-H 'Content-Type: application/fhir+json' \\\n"
        '      -d \'{"resourceType":"Patient","name":[{"family":"Svensson",'
        '"given":["Anna"]}]}\'\n\n'
        "  Ctrl-C stops Flöde (and its embedded PostgreSQL).\n"
    )


class _Flode(click.Group):
    """Every command reads the FLODE_* settings: one that is wrong is a usage error naming
    it (exit status 2), not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            Config()  # read before anything starts (a database, the workers of a load)
            return super().invoke(ctx)
        except SettingError as exc:
            raise click.UsageError(str(exc), ctx) from None


@click.group(cls=_Flode)
@click.version_option(__version__, prog_name="flode")
def main() -> None:
    """Flöde: a FHIR R4 platform for a modular health information environment."""


for _group in auth_commands.COMMANDS:
    main.add_command(_group)
main.add_command(audit_commands.audit)
main.add_command(events_commands.events)


@main.command()
@click.option("--host", default=None, help="Interface to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default: 8080].")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the embedded PostgreSQL keeps its data [default: ./.flode].",
)
@click.option(
    "--database-url",
    default=None,
    help="Use this PostgreSQL (>= 14) instead of the embedded one [env: FLODE_DATABASE_URL].",
)
@click.option("--no-demo", is_flag=True, help="Start empty: do not seed the demo region.")
@click.option(
    "--insecure-dev",
    is_flag=True,
    help="Development only: no authentication, every request may do everything.",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    database_url: str | None,
    no_demo: bool,
    insecure_dev: bool,
) -> None:
    """Serve the FHIR API."""
    if data_dir is not None and database_url is not None:
        raise click.UsageError("give either --data-dir or --database-url, not both")
    config = Config()
    config = replace(
        config,
        host=host or config.host,
        port=port if port is not None else config.port,
        data_dir=data_dir or config.data_dir,
        database_url=database_url or (None if data_dir else config.database_url),
        demo=not no_demo,
        insecure_dev=insecure_dev,
    )
    logs.configure()
    if insecure_dev:
        console.print(
            "[bold red]WARNING: --insecure-dev: authentication is off. Every request may read "
            "and write everything. Never use this with real patient data.[/bold red]"
        )
    # uvicorn re-raises the signal that stopped it; make SIGTERM unwind like Ctrl-C does, so the
    # embedded PostgreSQL is stopped and the lock released on either.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    lock = DataDirLock(config.data_dir)
    embedded = EmbeddedPostgres(config.data_dir)
    url = config.database_url
    try:
        if url is None:
            lock.acquire()
            with console.status("Starting the embedded PostgreSQL…"):
                url = embedded.start()
        uvloop.run(_serve(config, url))
    except AlreadyRunning as exc:
        console.print(f"[red]{exc}[/red]")
        sys.exit(1)
    except MigrationError as exc:
        console.print(f"[red]The database schema cannot be brought up to date:[/red] {exc}")
        sys.exit(1)
    finally:
        embedded.stop()
        lock.release()


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The embedded PostgreSQL's data directory, also while `flode serve` runs on it "
    "[default: ./.flode].",
)
@click.option(
    "--database-url",
    default=None,
    help="Load into this PostgreSQL instead [env: FLODE_DATABASE_URL].",
)
@click.option("--fast", is_flag=True, help="Write with COPY: for an initial migration.")
@click.option("--force", is_flag=True, help="Load files even if they were loaded before.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes [default: one per core].",
)
def load(
    paths: tuple[Path, ...],
    data_dir: Path | None,
    database_url: str | None,
    fast: bool,
    force: bool,
    workers: int | None,
) -> None:
    """Load FHIR Bundles (.json, .json.gz) and NDJSON (.ndjson, .ndjson.gz): files or folders.

    Files loaded before are skipped; see docs/loading.md."""
    from flode.load import cli, runner

    options = runner.Options(fast=fast, force=force, workers=workers or os.cpu_count() or 1)
    sys.exit(cli.run(paths, data_dir=data_dir, database_url=database_url, options=options))


@main.command(name="export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The embedded PostgreSQL's data directory, also while `flode serve` runs on it "
    "[default: ./.flode].",
)
@click.option(
    "--database-url", default=None, help="Export from this PostgreSQL [env: FLODE_DATABASE_URL]."
)
@click.option("--type", "types", multiple=True, help="Only these types (repeat, or commas).")
@click.option("--since", default=None, help="Only resources changed after this FHIR instant.")
@click.option(
    "--max-file-bytes",
    type=click.IntRange(min=1),
    default=256 * 1024 * 1024,
    help="Begin a new file of a type past this size [default: 256 MiB].",
)
@click.option(
    "--unmask-protected",
    is_flag=True,
    help="Keep the demographics of patients with protected identity (sekretessmarkering), "
    "e.g. to move the data to another Flöde; masked by default.",
)
def export_command(
    directory: Path,
    data_dir: Path | None,
    database_url: str | None,
    types: tuple[str, ...],
    since: str | None,
    max_file_bytes: int,
    unmask_protected: bool,
) -> None:
    """Export every resource (or some types) as FHIR Bulk Data NDJSON files into DIRECTORY."""
    from flode.bulk import cli

    sys.exit(
        cli.run(
            directory,
            data_dir=data_dir,
            database_url=database_url,
            types=types,
            since=since,
            max_file_bytes=max_file_bytes,
            unmask_protected=unmask_protected,
        )
    )


async def _serve(config: Config, database_url: str) -> None:
    from flode.app import build_app

    app = build_app(config, database_url)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level="warning",
            lifespan="on",
        )
    )
    started = asyncio.get_running_loop().create_future()

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.05)
        base = config.public_base_url or f"http://{config.host}:{_bound_port(server, config)}/fhir"
        console.print(_examples(base, config), soft_wrap=True, highlight=False)
        started.set_result(None)

    task = asyncio.create_task(announce())
    await server.serve()
    task.cancel()
    if server.started is False and not started.done():
        raise SystemExit(1)


def _bound_port(server: uvicorn.Server, config: Config) -> int:
    for srv in getattr(server, "servers", []):
        for sock in srv.sockets:
            port: int = sock.getsockname()[1]
            return port
    return config.port
