"""Verifying the hash chain (`flode audit verify`): every sealed entry from the first retained
one on, in chain order, against the entry before it and against its own fields.

- A changed entry (content or any other field) no longer matches its hash.
- A removed entry leaves a gap in the chain positions, and the entry after it names a previous
  hash that nothing has.
- Removed first entries: the chain starts neither at position 1 nor where the last prune
  (`audit_anchor`) left it.

After a break the walk goes on from what the entry stores, so each break is reported once and
the rest of the chain is still checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flode.audit.seal import COLUMNS, GENESIS, Conn, digest

PAGE = 2000


@dataclass(frozen=True, slots=True)
class Break:
    chain_pos: int
    id: str | None
    kind: str
    """`changed` (the entry does not match its hash), `missing` (entries before it are gone)
    or `relinked` (its previous hash is not the hash of the entry before it)."""
    text: str


@dataclass
class Report:
    sealed: int = 0
    unsealed: int = 0
    first: int | None = None
    last: int | None = None
    head: bytes | None = None
    """The hash of the last sealed entry: noted outside the database, it shows entries
    removed from the end of the chain, which the chain itself cannot."""
    breaks: list[Break] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.breaks


async def counts(conn: Conn) -> tuple[int, int]:
    """(sealed, unsealed) entries."""
    row = await conn.fetchrow(
        "SELECT count(chain_pos) AS sealed, count(*) - count(chain_pos) AS unsealed "
        "FROM audit_event"
    )
    assert row is not None
    return row["sealed"], row["unsealed"]


async def verify(conn: Conn, progress: Callable[[int], None] | None = None) -> Report:
    """Walk the chain; `progress` is told how many entries were checked so far."""
    report = Report()
    report.sealed, report.unsealed = await counts(conn)
    anchor = await conn.fetchrow(
        "SELECT chain_pos, hash FROM audit_anchor ORDER BY chain_pos DESC LIMIT 1"
    )
    expected, previous = (1, GENESIS) if anchor is None else (anchor[0] + 1, anchor[1])
    after = 0 if anchor is None else anchor[0]
    checked = 0
    while True:
        rows = await conn.fetch(
            f"SELECT chain_pos, hash, prev_hash, {COLUMNS} FROM audit_event "
            "WHERE chain_pos > $1 ORDER BY chain_pos LIMIT $2",
            after,
            PAGE,
        )
        for row in rows:
            pos = row["chain_pos"]
            report.first = pos if report.first is None else report.first
            report.last, report.head = pos, row["hash"]
            if pos != expected:
                gone = f"{expected}" if pos == expected + 1 else f"{expected}–{pos - 1}"
                report.breaks.append(
                    Break(pos, row["id"], "missing", f"entries at chain positions {gone} are gone")
                )
            elif row["prev_hash"] != previous:
                report.breaks.append(
                    Break(
                        pos,
                        row["id"],
                        "relinked",
                        "its previous hash is not the hash of the entry before it",
                    )
                )
            if digest(row["prev_hash"], row, pos) != row["hash"]:
                report.breaks.append(
                    Break(pos, row["id"], "changed", "the entry does not match its hash")
                )
            expected, previous = pos + 1, row["hash"]
            checked += 1
        if progress is not None:
            progress(checked)
        if len(rows) < PAGE:
            break
        after = rows[-1]["chain_pos"]
    return report
