"""COURIER_HTTP_PROXY and COURIER_NO_PROXY read once at start: which hosts go through the
proxy, its credentials kept out of sight, and a wrong value named with its reason."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from streams.config import Settings
from tests.unit.test_logs_and_summary import summary

PROXY = "http://courier:p%40ss@proxy.corp.example:3128"


@pytest.mark.parametrize(
    ("url", "through"),
    [
        ("https://api.hubapi.com/crm/v3", True),
        ("https://crm.internal.example/leads", False),  # named
        ("https://eu.partner.example/leads", False),  # a subdomain of a named domain
        ("https://partner.example/leads", False),  # the domain itself
        ("https://notpartner.example/leads", True),  # not a subdomain: only ends alike
        ("http://10.2.3.4/leads", False),  # in a named network
        ("http://[fd00::1]/leads", False),
        ("http://11.0.0.1/leads", True),
        ("https://CRM.INTERNAL.EXAMPLE./x", False),  # case and a final dot
    ],
)
def test_no_proxy_names_hosts_domains_and_networks(url: str, through: bool) -> None:
    settings = Settings(
        http_proxy=PROXY,
        no_proxy="crm.internal.example, .partner.example, 10.0.0.0/8, fd00::/8",
    )
    proxy = settings.forward_proxy()
    assert proxy is not None
    assert proxy.for_url(url) == ("http://proxy.corp.example:3128" if through else None)


def test_a_star_sends_everything_direct_and_no_setting_means_no_proxy() -> None:
    everything = Settings(http_proxy=PROXY, no_proxy="*").forward_proxy()
    assert everything is not None and everything.for_url("https://x.example") is None
    assert Settings().forward_proxy() is None
    assert Settings(http_proxy=" ").forward_proxy() is None


def test_credentials_become_a_proxy_header_and_are_never_shown() -> None:
    settings = Settings(http_proxy=PROXY, no_proxy="crm.internal.example", egress="public")
    proxy = settings.forward_proxy()
    assert proxy is not None
    token = base64.b64encode(b"courier:p@ss").decode()
    assert proxy.headers == {"Proxy-Authorization": f"Basic {token}"}
    assert proxy.address == "http://proxy.corp.example:3128"
    assert "p%40ss" not in repr(settings) and "p%40ss" not in str(settings.model_dump())
    # The proxy's host is where the worker connects: the egress policy lets it.
    assert settings.egress_policy().permits("proxy.corp.example", "10.0.0.5")
    assert not settings.egress_policy().permits("crm.internal.example", "10.0.0.5")


def test_the_start_up_summary_names_the_proxy_without_its_credentials() -> None:
    lines, _ = summary(
        {"destinations": [{"id": "crm", "url": "https://crm.example.com"}]},
        http_proxy=PROXY,
        no_proxy="crm.internal.example",
    )
    assert (
        "deliveries through the proxy http://proxy.corp.example:3128; "
        "direct: crm.internal.example" in lines
    )
    assert not any("p%40ss" in line or "courier:" in line for line in lines)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("proxy.corp:3128", "not a proxy URL like http://proxy.example.com:3128"),
        ("https://proxy.corp:3128", "not a proxy URL like http://proxy.example.com:3128"),
        ("http://proxy.corp:99999", "its port is not a number from 1 to 65535"),
        ("http://proxy.corp:3128/path", "a proxy URL has no path or query"),
    ],
)
def test_a_wrong_proxy_stops_start_up_naming_the_setting(value: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(http_proxy=value)
    message = caught.value.errors()[0]["msg"]
    assert message == f"Value error, http_proxy: {reason}" or message.startswith(
        f"Value error, http_proxy: {reason}"
    )


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("no_proxy", "10.0.0.0/33", "no_proxy: '10.0.0.0/33' is not a network (CIDR) or address"),
        ("no_proxy", "10.1.2.300", "no_proxy: '10.1.2.300' is not a network (CIDR) or address"),
        ("no_proxy", "crm.corp:8443", "no_proxy: 'crm.corp:8443' has a port: write the host alone"),
        ("no_proxy", "https://crm.corp", "no_proxy: 'https://crm.corp' is a URL"),
        ("no_proxy", "crm corp", "no_proxy: 'crm corp' is not a host name, address or network"),
        ("egress_allow", "*.corp.example", "'*.corp.example' is a wildcard: name each host"),
        ("egress_allow", "crm.corp:8443", "'crm.corp:8443' has a port: write the host alone"),
    ],
)
def test_a_list_entry_that_is_no_host_or_network_is_named(
    setting: str, value: str, problem: str
) -> None:
    """Before, COURIER_NO_PROXY took any such entry as a host name that matched nothing, so
    the hosts meant to go direct went through the proxy; one parser reads both lists now."""
    with pytest.raises(ValidationError) as caught:
        Settings(http_proxy=PROXY, **{setting: f"crm.internal.example, {value}"})
    message = str(caught.value)
    assert problem in message, message
    assert "http_proxy: no_proxy" not in message


def test_both_lists_take_addresses_in_brackets_names_in_any_script_and_a_final_dot() -> None:
    settings = Settings(
        http_proxy=PROXY, no_proxy="[fd00::7], bücher.example., *", egress_allow="[fd00::7]"
    )
    assert settings.egress_policy().permits("x.example", "fd00::7")
    proxy = settings.forward_proxy()
    assert proxy is not None and proxy.for_url("https://anything.example") is None
