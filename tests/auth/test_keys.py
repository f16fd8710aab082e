"""The signing keys of a data directory (flode.auth.keys): made once, on first use, even when
several processes start on a new data directory at the same moment."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from flode.auth.keys import KeyRing, load_or_create, rotate


def _first_key(directory: str, start: Any, found: Any) -> None:
    start.wait()
    found.put(load_or_create(Path(directory)).current.kid)


def test_processes_starting_at_once_on_a_new_data_directory_share_one_key(
    tmp_path: Path,
) -> None:
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        directory = tmp_path / f"keys-{attempt}"
        start, found = context.Event(), context.Queue()
        processes = [
            context.Process(target=_first_key, args=(str(directory), start, found))
            for _ in range(6)
        ]
        for process in processes:
            process.start()
        start.set()
        kids = {found.get(timeout=30) for _ in processes}
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0
        assert len(kids) == 1
        assert KeyRing(directory)().current.kid in kids
        assert [p.name for p in directory.iterdir()] == ["jwks.json"]  # no temporary left


def test_the_key_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    assert (tmp_path / "jwks.json").stat().st_mode & 0o777 == 0o600


def test_a_rotation_keeps_the_old_key_for_verifying(tmp_path: Path) -> None:
    first = load_or_create(tmp_path).current.kid
    rotated = rotate(tmp_path, retain_seconds=3600)
    assert rotated.current.kid != first
    assert {k.kid for k in rotated.all.keys} == {first, rotated.current.kid}
