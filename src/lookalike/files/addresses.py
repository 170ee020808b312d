"""Which IP addresses an image fetch may connect to: public unicast only.

`refusal(ip)` names why an address is refused (None: it is public). The tables are ours,
not only Python's `ipaddress` flags: those differ between Python versions and miss ranges
(site-local, the 3fff::/20 documentation block, NAT64). IPv6 forms that carry an IPv4
address (mapped, compatible, NAT64, 6to4) are judged by the IPv4 address they carry, so
`::ffff:127.0.0.1` is loopback however it is spelled.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

IPAddress = IPv4Address | IPv6Address

# (network, why) - the first match names the reason.
_IPV4_REFUSED: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified ('this network')"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255, broadcast
    )
)

_IPV6_REFUSED: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("::/8", "reserved"),  # mapped, compatible and NAT64 forms are judged before
        ("100::/64", "discard-only"),
        ("2001::/23", "IETF protocol assignment (Teredo, benchmarking, ORCHID)"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)

_IPV4_COMPATIBLE = IPv6Network("::/96")
_NAT64 = IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = IPv6Network("2002::/16")
_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")


def embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms that carry
    one: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d)
    and 6to4 (2002:AABB:CCDD::)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are themselves
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    return None


def refusal(ip: IPAddress | str) -> str | None:
    """Why an image fetch must not connect to `ip` ("loopback", "private", ...), or None
    when it is a public unicast address."""
    address = ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(address, IPv6Address):
        if address.scope_id:
            return "scoped (link-local)"
        carried = embedded_ipv4(address)
        if carried is not None:
            why = refusal(carried)
            return f"{why} IPv4 ({carried}) inside IPv6" if why else None
        table: tuple[tuple[IPv4Network | IPv6Network, str], ...] = _IPV6_REFUSED
    else:
        table = _IPV4_REFUSED
    for network, why in table:
        if address in network:
            return why
    if isinstance(address, IPv6Address) and address not in _GLOBAL_UNICAST_V6:
        return "unallocated (IPv6 global unicast is 2000::/3)"
    # Anything else Python's registry knows as not public stays refused too.
    if not address.is_global or address.is_reserved or address.is_private:
        return "not globally reachable"
    return None
