"""Parameterised SQL (`Args`) and, where no placeholder may stand, literals (`Literals`)."""

from __future__ import annotations

import asyncpg
import pytest

from flode.store.sql import Args, Literals, quoted


def test_args_number_the_placeholders_in_the_order_values_are_added() -> None:
    args = Args("first")
    assert (args.add(2), args.add("three")) == ("$2", "$3")
    assert args.values == ["first", 2, "three"]


def test_a_literal_doubles_the_quotes_inside_it() -> None:
    assert quoted("O'Brien") == "'O''Brien'"
    assert Literals().add(["a'b", "c"]) == "ARRAY['a''b', 'c']::text[]"
    assert (Literals().add(7), Literals().add(True)) == ("7", "true")


@pytest.mark.parametrize("value", [1.5, None, [1, 2], "nul\x00"])
def test_refuses_a_value_it_cannot_write_as_a_literal(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        Literals().add(value)


async def test_postgresql_reads_each_literal_back_as_the_value_written(
    database_url: str,
) -> None:
    text = "it's a \\ backslash; DROP TABLE x; --"
    conn = await asyncpg.connect(database_url)
    try:
        literals = Literals()
        row = await conn.fetchrow(
            f"SELECT {literals.add(text)} AS t, {literals.add([text, 'b'])} AS a, "
            f"{literals.add(12)} AS n"
        )
    finally:
        await conn.close()
    assert row is not None
    assert (row["t"], row["a"], row["n"]) == (text, [text, "b"], 12)
