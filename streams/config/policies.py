"""The policies a destination is configured with: retries, circuit breaker, caps, batches.

Plain validated settings; what they mean at run time lives beside the code that applies
them (streams/control/retry.py, circuit.py, caps.py and streams/stages/batching.py).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from streams.compiled_model import CompiledModel
from streams.config.response_rules import compile_json_path
from streams.config.schedule import DAYS, Day, TimeZoneName
from streams.secrets import SCRUBBER
from streams.template.conversions import time_zone


def _a_share(value: float) -> float:
    if not 0 < value <= 1:
        # 15 meant as a percentage was "less than or equal to 1", no more.
        raise ValueError(f"{value:g} is not a share above 0 and at most 1 (0.15 for 15 %)")
    return value


# A part of a whole, as error rates are written: 0.15 for 15 %.
Share = Annotated[float, AfterValidator(_a_share)]


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=5, ge=1, le=100)  # the first try included
    base_s: float = Field(default=1.0, gt=0)
    max_delay_s: float = Field(default=300.0, gt=0)
    # A Retry-After longer than this is not waited for: the attempt counts as the last.
    max_retry_after_s: float = Field(default=3600.0, ge=0)


class CircuitPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    consecutive_errors: int = Field(default=5, ge=1)
    error_rate: Share = 0.7
    window_s: float = Field(default=300.0, gt=0)
    min_requests: int = Field(default=10, ge=1)
    cool_down_s: float = Field(default=30.0, gt=0)
    trial_requests: int = Field(default=1, ge=1)
    # While open: "skip" gives the lead "System unavailable (circuit open)"; "park" holds it
    # until the cool-down ends. In a waterfall with a destination after this one, it skips.
    when_open: Literal["skip", "park"] = "skip"


class CapPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hour: int | None = Field(default=None, ge=0)
    day: int | None = Field(default=None, ge=0)
    week: int | None = Field(default=None, ge=0)
    month: int | None = Field(default=None, ge=0)
    # A day's cap by day of the week (``sat: 20, sun: 0``), in place of ``day`` on those days.
    weekdays: dict[Day, int] = Field(default_factory=dict)
    timezone: TimeZoneName = "UTC"  # windows start at midnight (and Monday, the 1st) here
    count: Literal["accepted", "attempts"] = "accepted"

    @field_validator("weekdays")
    @classmethod
    def _caps_not_negative(cls, caps: dict[Day, int]) -> dict[Day, int]:
        for day, cap in caps.items():
            if cap < 0:
                raise ValueError(f"{day}: a cap cannot be negative")
        return caps

    def limits(self, now: datetime) -> dict[str, int]:
        """The caps that apply at ``now``: window key → cap."""
        local = now.astimezone(time_zone(self.timezone))
        iso_year, iso_week, _ = local.isocalendar()
        day_cap = self.weekdays.get(DAYS[local.weekday()], self.day)
        caps = {
            f"hour {local:%Y-%m-%dT%H}": self.hour,
            f"day {local:%Y-%m-%d}": day_cap,
            f"week {iso_year}-W{iso_week:02d}": self.week,
            f"month {local:%Y-%m}": self.month,
        }
        return {key: cap for key, cap in caps.items() if cap is not None}


class BatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=2, le=1000)
    max_wait_ms: int = Field(default=200, ge=1, le=60_000)
    results: str | None = None  # JSON path of the per-lead list in the answer, e.g. $.results

    def model_post_init(self, _: object) -> None:
        if self.results is not None:
            compile_json_path(self.results)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# A host name: labels of letters (any script), digits, hyphens and underscores between dots.
_HOST_NAME = re.compile(r"\w([\w-]*\w)?(\.\w([\w-]*\w)?)*")


def names_and_networks(
    entries: tuple[str, ...], option: str, *, wildcards: bool = False
) -> tuple[tuple[str, ...], tuple[Network, ...]]:
    """A list of hosts and networks as operators write them (``10.0.0.0/8``, ``fd00::1``,
    ``[fd00::1]``, ``crm.example.com``): host names in lower case without a final dot, and
    networks. What is neither is named with its option, never taken as a host name that
    matches nothing (``10.0.0.0/33``, ``10.0.0.300``, ``crm.example.com:8080``).
    ``wildcards``: ``*``, ``*.example.com`` and ``.example.com`` are names too."""
    names: list[str] = []
    networks: list[Network] = []
    for entry in (e.strip().lower() for e in entries if e.strip()):
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = entry.rstrip(".")
        bare = name.removeprefix("*").removeprefix(".") if wildcards else name
        if (bare == "" and wildcards and name == "*") or (
            _HOST_NAME.fullmatch(bare) and not bare.replace(".", "").isdigit()
        ):
            names.append(name)
        else:
            raise ValueError(f"{option}: {entry!r} {_why_not_a_host(entry, wildcards)}")
    return tuple(names), tuple(networks)


def _why_not_a_host(entry: str, wildcards: bool) -> str:
    if "://" in entry:
        return "is a URL: write its host alone"
    if re.fullmatch(r"[^:]*[^\W\d][^:]*:\d+", entry):
        return "has a port: write the host alone (every port of it is meant)"
    if not wildcards and (entry.startswith(("*", ".")) or entry == "*"):
        return "is a wildcard: name each host (a domain's subdomains are not taken here)"
    if "/" in entry or ":" in entry or entry.replace(".", "").isdigit():
        return "is not a network (CIDR) or address"
    return "is not a host name, address or network"


class EgressPolicy(CompiledModel):
    """Where requests may go. ``public``: only to public addresses, unless a network or a
    host is in ``allow`` (a recipient that really lives on a private network); ``any``:
    anywhere (development, tests against 127.0.0.1). Destinations with ``insecure: true``
    are development ones: the policy does not apply to them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["public", "any"] = "public"
    allow: tuple[str, ...] = ()  # networks (CIDR or one address) and host names

    _networks: tuple[Network, ...] = PrivateAttr(default=())
    _hosts: frozenset[str] = PrivateAttr(default=frozenset())

    def model_post_init(self, _: object) -> None:
        hosts, self._networks = names_and_networks(self.allow, "allow")
        self._hosts = frozenset(hosts)

    def permits(self, host: str, address: str) -> bool:
        """May a request for ``host`` connect to ``address`` (an IP, as resolved)?"""
        if self.mode == "any" or host.lower().rstrip(".") in self._hosts:
            return True
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
        if any(ip in network for network in self._networks):
            return True
        # Private, loopback, link-local (cloud metadata 169.254.169.254), shared, reserved,
        # unspecified: none of them is global. Multicast never is a recipient.
        return ip.is_global and not ip.is_multicast


class ForwardProxy(CompiledModel):
    """The forward proxy deliveries go through (``COURIER_HTTP_PROXY``): ``http://host:port``,
    with ``user:password@`` when it asks for them (sent as ``Proxy-Authorization``), but for
    the hosts ``no_proxy`` names. An https recipient is reached through a CONNECT tunnel,
    with TLS to the recipient itself, its certificate verified as without a proxy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    # Hosts (``crm.example.com``), domains with their subdomains (``example.com`` or
    # ``.example.com``), addresses and networks (CIDR), as curl and most tools read NO_PROXY.
    no_proxy: tuple[str, ...] = ()

    _address: str = PrivateAttr(default="")
    _host: str = PrivateAttr(default="")
    _headers: dict[str, str] = PrivateAttr(default_factory=dict)
    _domains: tuple[str, ...] = PrivateAttr(default=())
    _networks: tuple[Network, ...] = PrivateAttr(default=())

    def model_post_init(self, _: object) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            # aiohttp speaks to a proxy in plain HTTP (an https recipient still gets TLS
            # end to end, inside the tunnel).
            raise ValueError("not a proxy URL like http://proxy.example.com:3128")
        try:
            port = parts.port or 80
        except ValueError:
            raise ValueError("its port is not a number from 1 to 65535") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("a proxy URL has no path or query: http://host:port")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self._address = f"http://{host}:{port}"
        self._host = parts.hostname  # as urlsplit gives it: lower case, no brackets
        if parts.username is not None:
            user, password = unquote(parts.username), unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._headers = {"Proxy-Authorization": f"Basic {token}"}
            for secret in (password, token):  # masked in every log line and event
                SCRUBBER.keep_secret(secret)
        names, self._networks = names_and_networks(self.no_proxy, "no_proxy", wildcards=True)
        # "*.example.com" and ".example.com" are the domain; "*" alone leaves "": every host.
        self._domains = tuple(name.lstrip("*").lstrip(".") for name in names)

    @property
    def address(self) -> str:
        """The proxy's URL without its credentials: what logs and summaries may show."""
        return self._address

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    @property
    def host(self) -> str:
        """Its host name: read for every request that goes through it."""
        return self._host

    def for_url(self, url: str) -> str | None:
        """The proxy to reach ``url`` through, or None when its host goes direct."""
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        if any(host == d or host.endswith(f".{d}") or d == "" for d in self._domains):
            return None  # "" is what "*" leaves: every host direct
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return self._address
        return None if any(address in n for n in self._networks) else self._address
