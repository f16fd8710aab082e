"""Settings, from the command line and the environment (FLODE_*), resolved once at start-up."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path


class SettingError(ValueError):
    """A FLODE_* setting in the environment that is not what it must be; the message names
    it and says what it should be."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingError(f"{name}: '{raw}' should be a whole number") from None


def _env_seconds(name: str, default: float) -> float:
    """A duration in seconds, greater than 0; ValueError naming the setting otherwise."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise SettingError(f"{name}: '{raw}' should be a number of seconds greater than 0")
    return seconds


def _env_list(name: str, default: str) -> tuple[str, ...]:
    """A comma-separated setting, its items stripped."""
    return tuple(h.strip() for h in os.environ.get(name, default).split(",") if h.strip())


def _env_flag(name: str) -> bool | None:
    raw = os.environ.get(name)
    return None if not raw else raw.lower() in ("1", "true", "yes", "on")


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
    insecure_dev: bool = False
    """No authentication at all: every request may do everything. Development only."""
    token_lifetime: int = field(default_factory=lambda: _env_int("FLODE_TOKEN_LIFETIME", 3600))
    care_relationship_days: int = field(
        default_factory=lambda: _env_int("FLODE_CARE_RELATIONSHIP_DAYS", 30)
    )
    """Days after a finished encounter that its care unit still has a care relationship with
    the patient (docs/access-control.md, L1)."""
    emergency_opening_minutes: int = field(
        default_factory=lambda: _env_int("FLODE_EMERGENCY_OPENING_MINUTES", 60)
    )
    """Minutes an emergency opening of blocked data lasts (L9)."""
    """Seconds an access token is valid."""
    # Clinician login at the authorization server (docs/modules.md): an upstream OpenID Connect
    # provider when `oidc_issuer` is set, else the built-in page with the demo staff.
    demo_login: bool | None = field(default_factory=lambda: _env_flag("FLODE_DEMO_LOGIN"))
    """The built-in login page with the demo staff; None: on when `demo` is."""
    oidc_issuer: str | None = field(
        default_factory=lambda: os.environ.get("FLODE_OIDC_ISSUER") or None
    )
    oidc_client_id: str = field(
        default_factory=lambda: os.environ.get("FLODE_OIDC_CLIENT_ID", "flode")
    )
    oidc_client_secret: str | None = field(
        default_factory=lambda: os.environ.get("FLODE_OIDC_CLIENT_SECRET") or None
    )
    oidc_scopes: str = field(
        default_factory=lambda: os.environ.get("FLODE_OIDC_SCOPES", "openid profile")
    )
    oidc_claims: str = field(default_factory=lambda: os.environ.get("FLODE_OIDC_CLAIMS", ""))
    """Which upstream claim holds what, e.g. `personnummer=pnr,care_unit_hsa_id=unit`."""
    auth_failures_per_minute: int = field(
        default_factory=lambda: _env_int("FLODE_AUTH_FAILURES_PER_MINUTE", 10)
    )
    """Failed client authentications per client and minute before the token endpoint says 429."""
    auth_refresh_seconds: float = 2.0
    """How often a server looks for revocations and module changes made by other processes."""

    @property
    def keys_dir(self) -> Path:
        """Where the token-signing keys are kept."""
        return self.data_dir / "keys"

    export_dir: Path | None = field(
        default_factory=lambda: (
            Path(os.environ["FLODE_EXPORT_DIR"]) if os.environ.get("FLODE_EXPORT_DIR") else None
        )
    )
    """Where `$export` writes its files; `DATA_DIR/export` when not set."""
    export_file_max_bytes: int = field(
        default_factory=lambda: _env_int("FLODE_EXPORT_FILE_MAX_BYTES", 256 * 1024 * 1024)
    )
    export_expiry_seconds: int = field(
        default_factory=lambda: _env_int("FLODE_EXPORT_EXPIRY_SECONDS", 24 * 3600)
    )
    export_workers: int = field(default_factory=lambda: _env_int("FLODE_EXPORT_WORKERS", 1))

    @property
    def export_path(self) -> Path:
        return self.export_dir if self.export_dir is not None else self.data_dir / "export"

    # Bulk Data `$import` (docs/bulk-data.md).
    import_dir: Path | None = field(
        default_factory=lambda: (
            Path(os.environ["FLODE_IMPORT_DIR"]) if os.environ.get("FLODE_IMPORT_DIR") else None
        )
    )
    """The directory whose files `$import` may read through `file:` URLs; None: none."""
    import_allowed_hosts: tuple[str, ...] = field(
        default_factory=lambda: _env_list("FLODE_IMPORT_ALLOWED_HOSTS", "localhost,127.0.0.0/8,::1")
    )
    """The hosts (names, addresses or networks) `$import` may fetch from; no other."""
    import_max_bytes: int = field(
        default_factory=lambda: _env_int("FLODE_IMPORT_MAX_BYTES", 1024 * 1024 * 1024)
    )
    """The largest input file `$import` fetches (as transferred, compressed or not)."""

    @property
    def import_work_path(self) -> Path:
        """Where `$import` keeps the files it fetched while a job runs."""
        return self.data_dir / "import"

    # Events and subscriptions (docs/events.md).
    subscription_allowed_hosts: tuple[str, ...] = field(
        default_factory=lambda: _env_list(
            "FLODE_SUBSCRIPTION_ALLOWED_HOSTS", "localhost,127.0.0.0/8,::1"
        )
    )
    """Hosts (names, addresses or networks) a rest-hook may reach over plain http or at a
    non-public address; every other endpoint must be https at a public address."""
    subscription_retry_max_seconds: int = field(
        default_factory=lambda: _env_int("FLODE_SUBSCRIPTION_RETRY_MAX_SECONDS", 300)
    )
    subscription_error_after: int = field(
        default_factory=lambda: _env_int("FLODE_SUBSCRIPTION_ERROR_AFTER", 3)
    )
    """Failed deliveries in a row before a subscription's status becomes `error`."""
    events_dispatch: bool = field(
        default_factory=lambda: _env_flag("FLODE_EVENTS_DISPATCH") is not False
    )
    """Run the events dispatcher in this process (off: other nodes deliver)."""
    events_retention_days: int = field(
        default_factory=lambda: _env_int("FLODE_EVENTS_RETENTION_DAYS", 30)
    )
    """Days each subscription keeps its events (for `$events`) and its delivery attempts;
    the dispatchers prune older ones, and what every consumer is done with, every hour."""
    events_poll_seconds: float = 1.0
    events_topics_seconds: float = field(
        default_factory=lambda: _env_seconds("FLODE_EVENTS_TOPICS_SECONDS", 2.0)
    )
    """How often every server looks for SubscriptionTopics written on another server."""
    nats_url: str | None = field(default_factory=lambda: os.environ.get("FLODE_NATS_URL") or None)
    """NATS server with JetStream to publish every event to (unset: no bridge)."""
    nats_stream: str = field(default_factory=lambda: os.environ.get("FLODE_NATS_STREAM", "FLODE"))
    audit_retention_days: int = field(
        default_factory=lambda: _env_int("FLODE_AUDIT_RETENTION_DAYS", 5 * 366)
    )
    """Days the access log keeps its entries; `flode audit prune` removes older ones
    (docs/audit.md; at least five years, L4)."""
    protected_identity_units: tuple[str, ...] = field(
        default_factory=lambda: tuple(
            dict.fromkeys(
                u.strip()
                for u in os.environ.get("FLODE_PROTECTED_IDENTITY_UNITS", "").split(",")
                if u.strip()
            )
        )
    )
    """HSA-ids of the care units that see the demographics of patients with protected identity
    (sekretessmarkering, docs/protected-identity.md); everyone else sees them masked."""
