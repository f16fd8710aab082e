"""Schema migrations: numbered SQL files applied in order at start-up, each recorded with its
checksum. An applied migration whose file was edited afterwards is refused loudly: the database
and the code would disagree about the schema."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# Any constant works; it keeps two nodes starting at once from migrating twice.
_LOCK_KEY = 0x464C4F4445  # "FLODE"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def bundled_migrations() -> list[Migration]:
    folder = resources.files("flode.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise MigrationError(f"migrations must be numbered 0001, 0002, … without gaps: {numbers}")
    return found


async def migrate(
    conn: asyncpg.Connection | PoolConnectionProxy, migrations: list[Migration] | None = None
) -> int:
    """Apply what is missing; return how many were applied."""
    migrations = bundled_migrations() if migrations is None else migrations
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migration (
                   number     integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT number, name, checksum FROM schema_migration")
        applied = {r["number"]: r for r in rows}
        known = {m.number for m in migrations}
        unknown = sorted(set(applied) - known)
        if unknown:
            raise MigrationError(
                f"the database has migrations {unknown} that this version of Flöde does not "
                "know: it was migrated by a newer version; run that version instead"
            )
        count = 0
        for migration in migrations:
            row = applied.get(migration.number)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.name} was edited after it was applied "
                        f"(recorded checksum {row['checksum'][:12]}…, file "
                        f"{migration.checksum[:12]}…). Never edit an applied migration: "
                        "restore the file and add a new numbered migration instead"
                    )
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migration (number, name, checksum) VALUES ($1, $2, $3)",
                migration.number,
                migration.name,
                migration.checksum,
            )
            count += 1
        return count
