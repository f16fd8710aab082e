"""`flode serve` as an operator runs it: a real process on an embedded PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flode.auth.local import issue_local
from flode.config import Config
from serving import free_port, postgres_running, wait_until_serving

FLODE = [sys.executable, "-m", "flode"]


def operator(data_dir: Path, base: str) -> dict[str, str]:
    """The headers of an operator's token for the server on `data_dir` at `base`."""
    root = base.removesuffix("/fhir")
    return {"Authorization": f"Bearer {issue_local(Config(data_dir=data_dir), root)}"}


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    data_dir = tmp_path / "data"
    port = free_port()
    process = subprocess.Popen(
        [*FLODE, "serve", "--data-dir", str(data_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        wait_until_serving(base, process)
        yield process, base, data_dir
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=30)


def test_serve_seeds_the_demo_region_and_prints_how_to_try_it(
    serving: tuple[subprocess.Popen[str], str, Path],
) -> None:
    process, base, data_dir = serving
    headers = operator(data_dir, base)
    bundle = httpx.get(f"{base}/Patient", params={"_total": "accurate"}, headers=headers).json()
    assert bundle["total"] == 12
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert base in err
    assert err.count("curl ") == 3


def test_a_second_serve_on_the_same_data_directory_says_one_is_already_running(
    serving: tuple[subprocess.Popen[str], str, Path],
) -> None:
    _, _, data_dir = serving
    second = subprocess.run(
        [*FLODE, "serve", "--data-dir", str(data_dir), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert "already running" in second.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_stopping_serve_stops_the_embedded_postgresql_and_data_survives_a_restart(
    tmp_path: Path, stop: signal.Signals
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    command = [*FLODE, "serve", "--no-demo", "--data-dir", str(data_dir), "--port", str(port)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until_serving(base, first)
    headers = operator(data_dir, base)
    assert httpx.get(f"{base}/Patient", headers=headers).json()["total"] == 0
    created = httpx.post(
        f"{base}/Patient", json={"resourceType": "Patient", "gender": "other"}, headers=headers
    )
    assert created.status_code == 201
    assert postgres_running(data_dir)
    first.send_signal(stop)
    first.communicate(timeout=30)
    assert first.returncode is not None
    assert not postgres_running(data_dir)

    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_serving(base, second)
        # The signing key survived the restart too: the token still verifies.
        again = httpx.get(f"{base}/Patient/{created.json()['id']}", headers=headers)
        assert again.status_code == 200
        assert again.json()["gender"] == "other"
    finally:
        second.send_signal(signal.SIGINT)
        second.communicate(timeout=30)


def test_serve_refuses_both_a_data_directory_and_a_database_url(tmp_path: Path) -> None:
    result = subprocess.run(
        [*FLODE, "serve", "--data-dir", str(tmp_path), "--database-url", "postgresql://x/y"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "either --data-dir or --database-url" in result.stderr


def test_serve_uses_the_postgresql_named_by_flode_database_url(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    env = {**os.environ, "FLODE_DATABASE_URL": database_url}
    process = subprocess.Popen(
        [*FLODE, "serve", "--no-demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        wait_until_serving(base, process)
        headers = operator(tmp_path / ".flode", base)
        created = httpx.post(f"{base}/Patient", json={"resourceType": "Patient"}, headers=headers)
        assert created.status_code == 201
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert not (tmp_path / ".flode" / "pgdata").exists(), "no embedded PostgreSQL was started"


def test_serve_refuses_requests_without_a_token(
    serving: tuple[subprocess.Popen[str], str, Path],
) -> None:
    _, base, _ = serving
    response = httpx.get(f"{base}/Patient")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"


def test_insecure_dev_serves_without_tokens_and_warns_at_start_and_in_every_response(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    command = [*FLODE, "serve", "--no-demo", "--insecure-dev"]
    process = subprocess.Popen(
        [*command, "--data-dir", str(tmp_path / "data"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_serving(base, process)
        response = httpx.get(f"{base}/Patient")
        assert response.status_code == 200
        assert "authentication is off" in response.headers["x-flode-insecure-dev"]
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert "--insecure-dev" in err
    assert "authentication is off" in err
