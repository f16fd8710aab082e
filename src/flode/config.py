"""Settings, from the command line and the environment (FLODE_*), resolved once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True, slots=True)
class Config:
    """Everything Flöde needs to know before it starts.

    `database_url` set → use that PostgreSQL; otherwise start the embedded one in `data_dir`.
    """

    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("FLODE_DATA_DIR", ".flode")))
    database_url: str | None = field(
        default_factory=lambda: os.environ.get("FLODE_DATABASE_URL") or None
    )
    host: str = field(default_factory=lambda: os.environ.get("FLODE_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: _env_int("FLODE_PORT", 8080))
    base_path: str = "/fhir"
    public_base_url: str | None = field(
        default_factory=lambda: os.environ.get("FLODE_BASE_URL") or None
    )
    max_body_bytes: int = field(
        default_factory=lambda: _env_int("FLODE_MAX_BODY_BYTES", 16 * 1024 * 1024)
    )
    default_page_size: int = field(default_factory=lambda: _env_int("FLODE_DEFAULT_COUNT", 20))
    max_page_size: int = field(default_factory=lambda: _env_int("FLODE_MAX_COUNT", 1000))
    pool_min_size: int = field(default_factory=lambda: _env_int("FLODE_DB_POOL_MIN", 2))
    pool_max_size: int = field(default_factory=lambda: _env_int("FLODE_DB_POOL_MAX", 10))
    demo: bool = True
