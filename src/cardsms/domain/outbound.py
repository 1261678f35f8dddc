"""Where the server may send requests of its own (webhooks): public addresses only, unless allowed.

A webhook URL is the customer's, but the request leaves from inside the operator's network: without a
rule it could reach the database port, a cloud metadata service (169.254.169.254) or an admin page on
localhost. So a target must resolve to public addresses only; loopback, private, link-local, shared,
multicast and reserved ranges are refused unless CARDSMS_OUTBOUND_ALLOW_NETWORKS lists them. The
request then goes to the address that was checked (not a second resolution: DNS rebinding), with the
URL's host as Host header and TLS name, follows no redirects, and reads at most MAX_ANSWER_BYTES
(delivery/webhooks.py). These are the rules; resolving a name is the sender's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

MAX_ANSWER_BYTES = 64 * 1024
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(ValueError):
    """A target the rules do not allow; the message names the address and the setting."""


def parse_networks(values: Sequence[str]) -> list[Network]:
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not a network such as 127.0.0.0/8 or 10.0.0.0/8") from None
    return out


def refusal(address: Address, allowed: Sequence[Network]) -> str:
    """Why the server may not send to `address`, or '' when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address in net for net in allowed):
        return ""
    for kind, hit in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                      ("multicast", address.is_multicast), ("unspecified", address.is_unspecified),
                      ("reserved", address.is_reserved), ("private", address.is_private),
                      ("not globally reachable", not address.is_global)):
        if hit:
            return (f"{address} is a {kind} address; the server sends only to public addresses "
                    "(CARDSMS_OUTBOUND_ALLOW_NETWORKS lists exceptions)")
    return ""


def check_literal(url: str, allowed: Sequence[Network]) -> None:
    """At the time a URL is set: refuse what is visibly internal (an IP literal or localhost)."""
    host = (urlsplit(url).hostname or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        if not any(ipaddress.ip_address("127.0.0.1") in net for net in allowed):
            raise OutboundRefused(f"{host} is the server itself; the server sends only to public addresses "
                                  "(CARDSMS_OUTBOUND_ALLOW_NETWORKS lists exceptions)")
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: checked when it is resolved, before every request
    if reason := refusal(address, allowed):
        raise OutboundRefused(reason)
