"""How the dispatcher paces itself (from flode.config.Config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Settings:
    poll_seconds: float = 1.0
    batch: int = 500
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    error_after: int = 3
    """Consecutive failed deliveries before the subscription's status becomes `error`."""
    lease_seconds: float = 60.0
    retention_days: int = 30
    """Days the events of each subscription and its delivery attempts are kept
    (flode.events.retention)."""
    prune_seconds: float = 3600.0
    """How often a dispatcher prunes what the retention lets go (one node at a time)."""
    topics_seconds: float = 2.0
    """How often every server looks for SubscriptionTopics written on another server
    (`FLODE_EVENTS_TOPICS_SECONDS`)."""
