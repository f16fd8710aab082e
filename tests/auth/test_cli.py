"""`flode module …` and `flode token issue` as an operator runs them: real processes, beside a
real `flode serve`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from serving import free_port

from .conftest import assertion, client_credentials, es384_key, public_jwks

FLODE = [sys.executable, "-m", "flode"]


def flode(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # A wide terminal, so that tables are not folded.
    env = {**os.environ, "COLUMNS": "400"}
    result = subprocess.run([*FLODE, *args], capture_output=True, text=True, timeout=120, env=env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.strip().splitlines()[-1]


@dataclass(frozen=True)
class Serving:
    process: subprocess.Popen[str]
    root: str
    data_dir: Path
    log: Path

    @property
    def base(self) -> str:
        return f"{self.root}/fhir"

    def token(self, client_id: str, key: ECKey, scope: str) -> httpx.Response:
        signed = assertion(key, client_id, f"{self.root}/auth/token")
        return httpx.post(f"{self.root}/auth/token", data=client_credentials(signed, scope))


def start(tmp_path: Path, *options: str) -> Serving:
    data_dir, port, log = tmp_path / "data", free_port(), tmp_path / "serve.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [*FLODE, "serve", "--data-dir", str(data_dir), "--port", str(port), *options],
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    serving = Serving(process, f"http://127.0.0.1:{port}", data_dir, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{serving.base}/metadata", timeout=1).status_code == 200:
                # The banner follows the server's start.
                while "Ctrl-C" not in log.read_text() and time.monotonic() < deadline:
                    time.sleep(0.1)
                return serving
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("flode serve did not start in time")


def stop(serving: Serving) -> None:
    if serving.process.poll() is None:
        serving.process.send_signal(signal.SIGINT)
        serving.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    serving = start(tmp_path_factory.mktemp("cli"), "--no-demo")
    yield serving
    stop(serving)


def jwks_file(tmp_path: Path, key: ECKey, private: bool = False) -> Path:
    path = tmp_path / f"{key.kid}.json"
    path.write_text(json.dumps({"keys": [key.as_dict(private=private)]}))
    return path


async def test_module_add_list_and_show_with_a_database_url(
    database_url: str, tmp_path: Path
) -> None:
    key = es384_key()
    added = flode(
        "module",
        "add",
        "--database-url",
        database_url,
        "--name",
        "Lab system",
        "--vendor",
        "Labbolaget AB",
        # A private key by mistake: only its public part is kept.
        "--jwks",
        str(jwks_file(tmp_path, key, private=True)),
        "--scopes",
        "system/Patient.rs system/Observation.cruds",
        "--reads",
        "Patient,ServiceRequest",
        "--writes",
        "Observation",
        "--topics",
        "http://example.org/SubscriptionTopic/lab-order",
    )
    client_id = last_line(added)
    assert re.fullmatch(r"lab-system-[0-9a-f]{8}", client_id)
    conn = await asyncpg.connect(database_url)
    try:
        stored = json.loads(
            await conn.fetchval("SELECT jwks FROM auth_client WHERE id = $1", client_id)
        )
    finally:
        await conn.close()
    assert stored == public_jwks(key)

    shown = flode("module", "show", client_id, "--database-url", database_url).stdout
    for text in ("Lab system", "Labbolaget AB", "ServiceRequest", "lab-order", key.kid or ""):
        assert text in shown
    listed = flode("module", "list", "--database-url", database_url).stdout
    assert client_id in listed
    assert "system/Observation.cruds" in listed

    missing = flode("module", "show", "nobody", "--database-url", database_url, check=False)
    assert missing.returncode == 1
    no_keys = flode(
        "module", "add", "--database-url", database_url, "--name", "X", "--scopes", "system/*.rs",
        check=False,
    )  # fmt: skip
    assert no_keys.returncode == 1
    assert "JWKS" in no_keys.stderr


def test_a_module_registered_beside_a_running_server_works_until_it_is_disabled(
    server: Serving, tmp_path: Path
) -> None:
    key = es384_key()
    client_id = last_line(
        flode(
            "module", "add", "--data-dir", str(server.data_dir), "--name", "Journal",
            "--jwks", str(jwks_file(tmp_path, key)), "--scopes", "system/Patient.rs",
            "--reads", "Patient",
        )
    )  # fmt: skip
    response = server.token(client_id, key, "system/Patient.rs")
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    assert httpx.get(f"{server.base}/Patient", headers=headers).status_code == 200

    flode("module", "disable", client_id, "--data-dir", str(server.data_dir))
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.base}/Patient", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "the disabled module's token is still accepted"
        time.sleep(0.2)
    refused = server.token(client_id, key, "system/Patient.rs")
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    listed = flode("module", "list", "--data-dir", str(server.data_dir)).stdout
    assert "disabled" in listed


def claims_of(token: str, server: Serving) -> dict[str, Any]:
    return dict(jwt.decode(token, _keys(server)).claims)


def test_token_issue_signs_with_the_data_directorys_key(server: Serving, tmp_path: Path) -> None:
    data_dir = str(server.data_dir)
    operator = last_line(flode("token", "issue", "--data-dir", data_dir, "--audience", server.base))
    headers = {"Authorization": f"Bearer {operator}"}
    assert httpx.get(f"{server.base}/Patient", headers=headers).status_code == 200
    assert claims_of(operator, server)["scope"] == "system/*.cruds"

    key = es384_key()
    client_id = last_line(
        flode(
            "module", "add", "--data-dir", data_dir, "--name", "Reader",
            "--jwks", str(jwks_file(tmp_path, key)), "--scopes", "system/Patient.rs",
        )
    )  # fmt: skip
    capped = last_line(
        flode(
            "token", "issue", "--data-dir", data_dir, "--audience", server.base,
            "--client", client_id, "--scope", "system/*.cruds",
        )
    )  # fmt: skip
    claims = claims_of(capped, server)
    assert claims["client_id"] == client_id
    assert claims["scope"] == "system/Patient.rs"

    user = [
        "token", "issue", "--data-dir", data_dir, "--audience", server.base,
        "--user", "SE2321000131-P000000000121", "--care-unit", "SE2321000131-E000000000201",
        "--care-provider", "SE2321000131-E000000000001", "--patient", "p1",
        "--purpose", "ETREAT",
    ]  # fmt: skip
    no_reason = flode(*user, check=False)
    assert no_reason.returncode == 2
    assert "--reason" in no_reason.stderr
    clinician = claims_of(last_line(flode(*user, "--reason", "Medvetslös, akut")), server)
    assert clinician["sub"] == clinician["employee_hsa_id"] == "SE2321000131-P000000000121"
    assert clinician["care_unit_hsa_id"] == "SE2321000131-E000000000201"
    assert clinician["purpose_of_use"] == "ETREAT"
    assert clinician["emergency_reason"] == "Medvetslös, akut"
    assert clinician["patient"] == "p1"
    assert clinician["scope"] == "user/*.cruds"


def test_rotate_key_makes_a_new_signing_key_and_old_tokens_stay_valid(server: Serving) -> None:
    data_dir = str(server.data_dir)
    old = last_line(flode("token", "issue", "--data-dir", data_dir, "--audience", server.base))
    kid = last_line(flode("module", "rotate-key", "--data-dir", data_dir))
    published = {k["kid"] for k in httpx.get(f"{server.root}/auth/jwks").json()["keys"]}
    assert kid in published
    assert len(published) >= 2
    new = last_line(flode("token", "issue", "--data-dir", data_dir, "--audience", server.base))
    assert jwt.decode(new, _keys(server)).header["kid"] == kid
    for token in (old, new):
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{server.base}/Patient", headers=headers).status_code == 200


def _keys(server: Serving) -> KeySet:
    return KeySet.import_key_set(httpx.get(f"{server.root}/auth/jwks").json())


def test_serve_with_the_demo_registers_demo_modules_and_says_how_to_get_a_token(
    tmp_path: Path,
) -> None:
    serving = start(tmp_path)
    try:
        banner = serving.log.read_text()
        match = re.search(r"export TOKEN=\$\((.+)\)", banner)
        assert match is not None, banner
        command = match[1].split()
        assert command[:3] == ["flode", "token", "issue"]
        token = last_line(flode(*command[1:]))
        headers = {"Authorization": f"Bearer {token}"}
        bundle = httpx.get(
            f"{serving.base}/Patient", params={"_total": "accurate"}, headers=headers
        )
        assert bundle.json()["total"] == 12
        assert banner.count('-H "Authorization: Bearer $TOKEN"') == 2

        listed = flode("module", "list", "--data-dir", str(serving.data_dir)).stdout
        assert "demo-journal" in listed
        assert "demo-lab" in listed
        # The demo laboratory's key is there to try the backend flow with.
        key_file = serving.data_dir / "demo" / "demo-lab.private.jwk"
        key = ECKey.import_key(json.loads(key_file.read_text()))
        response = serving.token("demo-lab", key, "system/Observation.cruds")
        assert response.status_code == 200, response.text
    finally:
        stop(serving)
