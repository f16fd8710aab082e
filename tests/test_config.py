"""Settings read from the environment (flode.config), and what a wrong one does."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from flode.app import build_services
from flode.config import Config

TOPICS_SECONDS = "FLODE_EVENTS_TOPICS_SECONDS"


def test_how_often_topics_are_read_again_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TOPICS_SECONDS, raising=False)
    assert Config().events_topics_seconds == 2.0
    monkeypatch.setenv(TOPICS_SECONDS, "0.5")
    assert Config().events_topics_seconds == 0.5
    monkeypatch.setenv(TOPICS_SECONDS, "30")
    assert Config().events_topics_seconds == 30.0


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "nan", "inf"])
def test_a_topics_interval_that_is_not_a_number_of_seconds_above_zero_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(TOPICS_SECONDS, raw)
    with pytest.raises(ValueError, match=f"{TOPICS_SECONDS}: '{raw}' should be a number of"):
        Config()


async def test_the_events_of_a_server_read_the_topics_as_often_as_configured(
    database_url: str, test_config: Config
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        services = build_services(pool, replace(test_config, events_topics_seconds=0.25))
    finally:
        await pool.close()
    assert services.events.settings.topics_seconds == 0.25


def test_serve_refuses_to_start_with_a_wrong_setting_and_names_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flode", "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, TOPICS_SECONDS: "0"},
    )
    assert result.returncode == 2
    assert f"{TOPICS_SECONDS}: '0' should be a number of seconds greater than 0" in result.stderr
    assert not (tmp_path / "pgdata").exists()  # refused before PostgreSQL was started


@pytest.mark.parametrize(
    ("setting", "raw", "told"),
    [
        (TOPICS_SECONDS, "soon", "should be a number of seconds greater than 0"),
        ("FLODE_CARE_RELATIONSHIP_DAYS", "thirty", "should be a whole number"),
    ],
)
def test_any_command_names_a_wrong_setting_instead_of_failing_with_a_traceback(
    tmp_path: Path, setting: str, raw: str, told: str
) -> None:
    empty = tmp_path / "empty.ndjson"
    empty.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "flode", "load", "--data-dir", str(tmp_path / "data"), str(empty)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, setting: raw},
    )
    assert result.returncode == 2
    assert f"{setting}: '{raw}' {told}" in result.stderr
    assert "Traceback" not in result.stderr
