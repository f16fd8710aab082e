"""Where a rest-hook may send notifications (server-side request forgery, OWASP SSRF).

A notification carries patient data to a URL a client chose, from inside the region's network.
So an endpoint must be `https`, and must not be — or resolve to — a loopback, private,
link-local, multicast or otherwise reserved address, unless its host is on the operator's
allow-list (`FLODE_SUBSCRIPTION_ALLOWED_HOSTS`; by default only the loopback host, for
development and tests). Hosts on the allow-list may also use plain `http`.

The address is checked when the Subscription is written and again before every delivery, so
a name that later resolves elsewhere (DNS rebinding) is refused then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

DEFAULT_ALLOWED = ("localhost", "127.0.0.0/8", "::1")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


class EndpointPolicy:
    def __init__(self, allowed: Sequence[str] = DEFAULT_ALLOWED) -> None:
        self.hosts: set[str] = set()
        self.networks: list[Network] = []
        for entry in allowed:
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.rstrip("."))

    def _allowed_address(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def _allowed_host(self, host: str) -> bool:
        if host in self.hosts:
            return True
        try:
            return self._allowed_address(ipaddress.ip_address(host))
        except ValueError:
            return False

    def check(self, url: str) -> str | None:
        """Why `url` may not be a rest-hook endpoint, judged without any look-up; None if it
        may (its addresses are checked by `resolve`)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return f"'{url}' is not a valid URL"
        host = (parts.hostname or "").lower().rstrip(".")
        if parts.scheme not in ("http", "https") or not host:
            return "the endpoint must be an absolute https URL"
        if parts.username or parts.password:
            return "the endpoint must not carry a user name or password (use channel.header)"
        if port == 0:
            return "the endpoint's port is not valid"
        allowed = self._allowed_host(host)
        if parts.scheme != "https" and not allowed:
            return f"the endpoint must use https ({host} is not on the server's allow-list)"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        if not allowed and not _public(address):
            return (
                f"the endpoint's address {host} is not a public address (loopback, private, "
                "link-local and reserved networks are refused unless allow-listed)"
            )
        return None

    async def resolve(self, url: str) -> str | None:
        """Why `url` may not be used now, its host's addresses looked up; None if it may."""
        reason = self.check(url)
        if reason is not None:
            return reason
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        if self._allowed_host(host):
            return None
        try:
            ipaddress.ip_address(host)
            return None  # a literal public address, checked above
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout=5
            )
        except (OSError, TimeoutError):
            return f"the endpoint's host {host} cannot be resolved"
        for *_, sockaddr in found:
            address = ipaddress.ip_address(sockaddr[0])
            if not _public(address) and not self._allowed_address(address):
                return (
                    f"the endpoint's host {host} resolves to {address}, which is not a public "
                    "address (refused unless allow-listed)"
                )
        return None

    def listed(self, url: str) -> str | None:
        """Why a server that reaches only the allow-list may not fetch `url` (Bulk Data
        `$import`); None if it may. Its host must be listed by name, or be an address in a
        listed network: a name is never looked up, so it cannot resolve around the list."""
        try:
            host = (urlsplit(url).hostname or "").lower().rstrip(".")
        except ValueError:
            return f"'{url}' is not a valid URL"
        if host and not self._allowed_host(host):
            return f"the host {host} is not on the server's allow-list"
        return self.check(url)
