"""`flode module …` and the FHIR operations `[base]/$module-…` are one registry administered
one way: a real `flode serve` process and real CLI processes on the same database, each change
seen by the other and recorded by the same structured log line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from flode.auth.local import OPERATOR, issue_local
from flode.config import Config
from serving import free_port, wait_until_serving

from .test_module_admin import parameters, value

FLODE = [sys.executable, "-m", "flode"]


def flode(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}
    command = [*FLODE, "module", *args, "--database-url", database_url]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def register(database_url: str, name: str, scopes: str) -> subprocess.CompletedProcess[str]:
    """`flode module add` of an app; its client id is the last line of its output."""
    redirect = f"https://{name.lower()}.example.se/cb"
    added = flode(
        database_url, "add", "--name", name, "--scopes", scopes, "--redirect-uri", redirect
    )
    assert added.returncode == 0, added.stderr
    return added


def recorded(text: str) -> list[dict[str, Any]]:
    """The `module administered` log lines (JSON) in `text`."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "module administered"]


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`flode serve` on the session's database, its log in a file."""
    data_dir = tmp_path_factory.mktemp("module-admin")
    port, log = free_port(), data_dir / "serve.log"
    env = {**os.environ, "FLODE_DATA_DIR": str(data_dir)}
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*FLODE, "serve", "--database-url", database_url, "--port", str(port), "--no-demo"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            env=env,
        )
    root = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{root}/fhir", process)
        config = replace(Config(), data_dir=data_dir)
        yield root, {"Authorization": f"Bearer {issue_local(config, root)}"}, log
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def test_the_cli_and_the_api_administer_one_registry_and_log_alike(
    served: Any, database_url: str
) -> None:
    root, admin, log = served
    added = register(database_url, "Shared", "system/Patient.rs")
    client_id = added.stdout.strip().splitlines()[-1]
    [line] = recorded(added.stderr)
    assert (line["action"], line["client_id"], line["via"]) == ("add", client_id, "cli")

    # The server answers what the CLI registered.
    shown = httpx.get(f"{root}/fhir/$module-show", params={"client": client_id}, headers=admin)
    assert shown.status_code == 200, shown.text
    assert value(shown.json(), "name") == "Shared"

    # The API changes it; the CLI shows the change.
    changed = httpx.post(
        f"{root}/fhir/$module-update",
        json=parameters(("client", "String", client_id), ("vendor", "String", "Labbolaget AB")),
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert "Labbolaget AB" in flode(database_url, "show", client_id).stdout

    # The CLI changes scopes and declaration the way the API does.
    updated = flode(
        database_url, "update", client_id, "--scopes", "system/Patient.rs system/Observation.rs",
        "--reads", "Patient,Observation", "--contact", "lab@example.se",
    )  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    shown = httpx.get(f"{root}/fhir/$module-show", params={"client": client_id}, headers=admin)
    body = shown.json()
    assert [p["valueString"] for p in body["parameter"] if p["name"] == "scopes"] == [
        "system/Patient.rs",
        "system/Observation.rs",
    ]
    assert value(body, "contact") == "lab@example.se"
    assert value(body, "vendor") == "Labbolaget AB"

    deadline = time.monotonic() + 10
    while not recorded(log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    [served_line] = recorded(log.read_text())
    assert served_line["action"] == "update"
    assert served_line["changed"] == ["vendor"]
    assert (served_line["via"], served_line["by"]) == ("api", OPERATOR)


def test_the_cli_refuses_a_change_that_cannot_work_naming_the_option(
    database_url: str, tmp_path: Path
) -> None:
    client_id = register(database_url, "Strict", "user/*.rs").stdout.strip().splitlines()[-1]
    for option, wrong in (
        ("--scopes", "user/*.rs everything"),
        ("--reads", "observation"),
        ("--redirect-uri", "strict"),
        ("--topics", "lab-order"),
    ):
        refused = flode(database_url, "update", client_id, option, wrong)
        assert refused.returncode == 1, refused.stderr
        assert f"not changed ({option})" in refused.stderr, refused.stderr
        assert not recorded(refused.stderr)
    unknown = flode(database_url, "update", "no-such-module", "--name", "X")
    assert unknown.returncode == 1
    assert "No module has client id 'no-such-module'" in unknown.stderr
    nothing = flode(database_url, "update", client_id)
    assert nothing.returncode == 2
    assert "nothing to change" in nothing.stderr
    bad_add = flode(database_url, "add", "--name", "Bad", "--scopes", "system/Patient.xyz",
                    "--redirect-uri", "https://bad.example.se/cb")  # fmt: skip
    assert bad_add.returncode == 1
    assert "was not registered (--scopes)" in bad_add.stderr
    key_file = tmp_path / "jwks.json"
    key_file.write_text(json.dumps([1]))
    bad_key = flode(database_url, "update", client_id, "--jwks", str(key_file))
    assert bad_key.returncode == 2
    assert "holds no JWKS" in bad_key.stderr
