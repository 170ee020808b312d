"""The address classifier against Python's own `ipaddress` registry flags: every address
Python calls non-public is refused, and nothing public is refused but the ranges we list
on purpose (and IPv6 forms that carry a refused IPv4 address)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookalike.files.addresses import embedded_ipv4, refusal

# Refused although some Python versions call (parts of) them global: a stricter policy is
# fine for image hosts. Everything else we refuse must be non-public by Python's flags.
STRICTER_V4 = [IPv4Network(n) for n in ("192.0.0.0/24", "192.88.99.0/24", "224.0.0.0/4")]
STRICTER_V6 = [
    IPv6Network(n)
    for n in ("::/8", "64:ff9b:1::/48", "2001::/23", "3fff::/20", "fec0::/10", "ff00::/8")
]


def python_says_not_public(ip: IPv4Address | IPv6Address) -> bool:
    flags = [
        not ip.is_global,
        ip.is_private,
        ip.is_loopback,
        ip.is_link_local,
        ip.is_multicast,
        ip.is_reserved,
        ip.is_unspecified,
    ]
    if isinstance(ip, IPv6Address):
        flags.append(ip.is_site_local)
    return any(flags)


@settings(max_examples=2000)
@given(st.ip_addresses(v=4))
def test_ipv4_refused_exactly_when_not_public(ip: IPv4Address) -> None:
    if python_says_not_public(ip):
        assert refusal(ip) is not None
    elif refusal(ip) is not None:
        assert any(ip in net for net in STRICTER_V4), f"{ip} refused: {refusal(ip)}"


@settings(max_examples=2000)
@given(st.ip_addresses(v=6))
def test_ipv6_never_lets_a_non_public_address_through(ip: IPv6Address) -> None:
    carried = embedded_ipv4(ip)
    if carried is not None:  # judged as the IPv4 address it carries (see below)
        assert (refusal(ip) is None) == (refusal(carried) is None)
    elif python_says_not_public(ip):
        assert refusal(ip) is not None
    elif refusal(ip) is not None:
        assert any(ip in net for net in STRICTER_V6) or ip not in IPv6Network("2000::/3"), (
            f"{ip} refused: {refusal(ip)}"  # outside 2000::/3 nothing public is allocated
        )


EMBEDDINGS = {
    "mapped": lambda v4: IPv6Address(f"::ffff:{v4}"),
    "compatible": lambda v4: IPv6Address(int(v4)),
    "nat64": lambda v4: IPv6Address(f"64:ff9b::{v4}"),
    "6to4": lambda v4: IPv6Address((0x2002 << 112) | (int(v4) << 80) | 1),
}


@pytest.mark.parametrize("form", sorted(EMBEDDINGS))
@given(v4=st.ip_addresses(v=4))
def test_an_ipv4_inside_ipv6_is_judged_as_itself(form: str, v4: IPv4Address) -> None:
    wrapped = EMBEDDINGS[form](v4)
    if form == "compatible" and int(v4) <= 1:
        return  # :: and ::1 are the IPv6 unspecified and loopback addresses themselves
    assert embedded_ipv4(wrapped) == v4
    assert (refusal(wrapped) is None) == (refusal(v4) is None)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("100.64.0.1", "shared"),
        ("100.127.255.254", "shared"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.0.170", "IETF"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::127.0.0.1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("2002:0a00:0001::", "private"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "scoped"),
        ("fec0::1", "site-local"),
        ("fc00::1", "unique local"),
        ("fd12:3456::1", "unique local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("2001::1", "Teredo"),
        ("100::1", "discard"),
        ("64:ff9b:1::1", "NAT64"),
    ],
)
def test_internal_addresses_are_refused_with_a_reason(address: str, reason: str) -> None:
    why = refusal(address)
    assert why is not None and reason in why, (address, why)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "100.63.255.255",  # just below the shared range
        "100.128.0.0",  # just above it
        "172.32.0.1",  # just above 172.16/12
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "::ffff:8.8.8.8",  # a public IPv4, mapped
        "64:ff9b::808:808",  # a public IPv4 through NAT64
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ip_address(address)) is None
