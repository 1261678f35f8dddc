"""The address rules for requests the server makes itself (webhooks)."""

from __future__ import annotations

import ipaddress

import pytest

from cardsms.domain.outbound import OutboundRefused, check_literal, parse_networks, refusal


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("192.168.1.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"), ("100.64.0.1", "not globally reachable"),
    ("::ffff:127.0.0.1", "loopback"), ("fd00::1", "private"),
])
def test_internal_addresses_are_refused_by_kind(address: str, kind: str) -> None:
    assert f"a {kind} address" in refusal(ipaddress.ip_address(address), [])


def test_public_addresses_pass_and_allowed_networks_are_exceptions() -> None:
    assert refusal(ipaddress.ip_address("8.8.8.8"), []) == ""
    allowed = parse_networks(["10.1.0.0/16", "::1/128"])
    assert refusal(ipaddress.ip_address("10.1.200.3"), allowed) == ""
    assert refusal(ipaddress.ip_address("10.2.0.1"), allowed)
    assert refusal(ipaddress.ip_address("::1"), allowed) == ""
    with pytest.raises(ValueError, match="not a network"):
        parse_networks(["10.0.0.0/33"])


def test_literal_urls_are_checked_when_set() -> None:
    for url in ("http://127.0.0.1/x", "http://localhost:8080/", "https://[::1]/", "http://api.localhost/"):
        with pytest.raises(OutboundRefused):
            check_literal(url, [])
    check_literal("https://hooks.example.com/x", [])  # a name: checked when resolved, before each request
    check_literal("http://localhost:8080/", parse_networks(["127.0.0.0/8"]))
