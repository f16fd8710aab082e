"""The server's signing keys: generated on first start, kept in the data directory
(`keys/jwks.json`, readable by the server's user only), rotated on demand.

The newest key signs; every key verifies, so tokens signed before a rotation stay valid until
they expire. Keys older than `retain` after a rotation are dropped.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, Key, KeySet

ALGORITHM = "ES256"


@dataclass(frozen=True)
class SigningKeys:
    current: ECKey
    all: KeySet

    def public_jwks(self) -> dict[str, Any]:
        """The JWKS published at /auth/jwks: public parts only."""
        keys = [
            {**key.as_dict(private=False), "alg": ALGORITHM, "use": "sig"} for key in self.all.keys
        ]
        return {"keys": keys}


def _new_key() -> ECKey:
    key = ECKey.generate_key("P-256", parameters={"alg": ALGORITHM, "use": "sig"}, private=True)
    key.ensure_kid()
    return key


def _write(path: Path, entries: list[dict[str, Any]], *, first: bool = False) -> bool:
    """Write the key file whole, through a temporary file of this process's own, so that
    processes starting at once (the workers of `flode load`, several servers) never read a
    file another one is still writing. `first`: only if there is none yet; False if another
    process made it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump({"keys": entries}, file)
        if not first:
            temporary.replace(path)
            return True
        try:
            os.link(temporary, path)  # fails if the file exists: the first one wins
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _load(entries: list[dict[str, Any]]) -> SigningKeys:
    ordered = sorted(entries, key=lambda e: e["created"])
    keys = [ECKey.import_key({k: v for k, v in e.items() if k != "created"}) for e in ordered]
    return SigningKeys(keys[-1], KeySet(list[Key](keys)))


def load_or_create(directory: Path) -> SigningKeys:
    """The keys in `directory/jwks.json`, made on first use."""
    path = directory / "jwks.json"
    if not path.exists():
        entries = [{**_new_key().as_dict(private=True), "created": time.time()}]
        if _write(path, entries, first=True):
            return _load(entries)
    found: list[dict[str, Any]] = json.loads(path.read_text())["keys"]
    return _load(found)


def rotate(directory: Path, retain_seconds: float) -> SigningKeys:
    """Add a new signing key; drop keys retired more than `retain_seconds` ago."""
    path = directory / "jwks.json"
    entries = json.loads(path.read_text())["keys"] if path.exists() else []
    now = time.time()
    entries.sort(key=lambda e: e["created"])
    # A key retires when the next one is made; keep it while its tokens may live.
    kept = [
        e
        for i, e in enumerate(entries)
        if i + 1 == len(entries) or entries[i + 1]["created"] > now - retain_seconds
    ]
    kept.append({**_new_key().as_dict(private=True), "created": now})
    _write(path, kept)
    return _load(kept)


class KeyRing:
    """The keys of a data directory, re-read when the file changes (a rotation made by the CLI
    while the server runs takes effect at once)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._keys = load_or_create(directory)
        self._stamp = self._mtime()

    def _mtime(self) -> float:
        try:
            return (self.directory / "jwks.json").stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def __call__(self) -> SigningKeys:
        stamp = self._mtime()
        if stamp != self._stamp:
            self._keys, self._stamp = load_or_create(self.directory), stamp
        return self._keys

    def rotate(self, retain_seconds: float) -> SigningKeys:
        self._keys = rotate(self.directory, retain_seconds)
        self._stamp = self._mtime()
        return self._keys
