"""The egress policy at connect time: a request goes only where the policy lets it.

Checked on the addresses a host name resolves to, in the connector's resolver, so a name
that resolves to 10.0.0.1 (or starts to, DNS rebinding) is refused as 10.0.0.1 would be;
IP literals, which aiohttp does not resolve, are checked before the request. Everything
resolved and not permitted is dropped; a host with no permitted address is refused.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from streams.config.policies import EgressPolicy
from streams.errors import EgressRefused


class AddressRefused(OSError):
    """Raised inside aiohttp's connector (which wraps OSErrors); unwrapped by the sender."""


class GuardedResolver(AbstractResolver):
    """``proxies``: the forward proxies' host names requests go through (the sender adds
    each as it uses it). The worker connects to a proxy, often on a private network, and
    never to a recipient through it: a proxy is named by the operator (a reference, never
    lead data), so it is let through as the worker's own proxy is."""

    def __init__(self, policy: EgressPolicy, proxies: set[str] | None = None) -> None:
        self._policy = policy
        self._proxies = proxies if proxies is not None else set()
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        if host in self._proxies:
            return found
        permitted = [r for r in found if self._policy.permits(host, r["host"])]
        if not permitted:
            raise AddressRefused(f"{host} resolves only to addresses the egress policy refuses")
        return permitted

    async def close(self) -> None:
        await self._resolver.close()


def check_literal(url: str, policy: EgressPolicy) -> None:
    """An IP literal in the URL is connected to as it is: check it here."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return  # a name: the resolver checks what it resolves to
    if not policy.permits(host, host):
        raise EgressRefused(f"{host} is an address the egress policy refuses")
