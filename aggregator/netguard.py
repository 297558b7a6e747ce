"""SSRF guard: decides whether a URL or a resolved address may be fetched for an API caller,
or for a feed (its article links and redirects).

URLs that API callers send may reach public addresses on the web's ports (80, 443) only (or
`api.fetch_allow_hosts`, any port). The collector allows every address on the hosts its sources
name (the operator's choice: an intranet feed) and public ones, on any port, elsewhere
(`collect.public_links_only`). The decisions
(`is_public_address`, `parse_host_literal`, `AddressGuard`) are pure; `GuardedResolver`
applies them at the one place every connection passes through, after DNS resolution, so
names that resolve to private addresses and redirects to them are refused too (the fetcher
checks each redirect hop with `AddressGuard.check_url` as well).
This module never opens a connection itself.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from aggregator.canonical import lower_host
from aggregator.errors import BlockedAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})
# The ports an API caller's URL may name (or imply), on hosts the operator did not allow: any
# other made us a port scanner and a client of whatever listens on a public host (a Redis
# on 6379, an admin panel on 8080), sending it a request line of the caller's choosing.
WEB_PORTS = frozenset({80, 443})

# Ranges that `ipaddress.is_global` (Python 3.11) still calls global but that reach
# infrastructure rather than the public internet.
_EXTRA_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 connects to the local host on Linux
        "100.64.0.0/10",  # CGNAT (RFC 6598); Alibaba Cloud metadata is 100.100.100.200
        "169.254.0.0/16",  # link-local; AWS/GCP/Azure metadata is 169.254.169.254
        "192.0.0.0/24",  # IETF protocol assignments; Oracle Cloud metadata is 192.0.0.192
        # Azure's platform endpoint (WireServer: the VM agent's goal state and extension
        # settings, on port 80). `is_global` calls it public, and it was fetched for callers;
        # it answers only from within Azure, as the metadata addresses above do.
        "168.63.129.16/32",
        "198.18.0.0/15",  # benchmarking (RFC 2544)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. broadcast
    )
)
_EXTRA_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/96",  # IPv4-compatible (deprecated, RFC 4291 2.5.5.1), :: and ::1 included
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): translates into private space
        "2001::/32",  # Teredo: the embedded server/client addresses are not ours to judge
        "fc00::/7",  # unique local, AWS IPv6 metadata fd00:ec2::254 included
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: last 32 bits are IPv4


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64 or 6to4), if any."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    return None


def _is_public_ip(addr: IPAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            return False  # a zone id only makes sense for link-local destinations
        embedded = _embedded_ipv4(addr)
        if embedded is not None:
            return _is_public_ip(embedded)
        if any(addr in net for net in _EXTRA_BLOCKED_V6):
            return False
    elif any(addr in net for net in _EXTRA_BLOCKED_V4):
        return False
    return addr.is_global and not (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


def is_public_address(ip: str | IPAddress) -> bool:
    """True when `ip` is a unicast address on the public internet.

    Refused: loopback, private (RFC 1918, ULA), link-local, CGNAT, cloud-metadata, multicast,
    reserved, unspecified, and IPv6 forms that embed one of those (IPv4-mapped, NAT64, 6to4).
    Anything that does not parse as an address is not public.
    """
    if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
        parsed = _parse_ip(str(ip))
        if parsed is None:
            return False
        ip = parsed
    return _is_public_ip(ip)


def _parse_ip(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


_IPV4_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """Parse IPv4 the permissive way inet_aton(3) and the WHATWG URL parser do.

    1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last part fills the
    remaining bytes, so 127.1 is 127.0.0.1 and 2130706433 is 127.0.0.1. getaddrinfo accepts
    these forms, so the guard must see through them.
    """
    if host.endswith("."):
        host = host[:-1]  # WHATWG allows one trailing dot on an IPv4 host
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        if not _IPV4_PART.match(part):
            return None
        if part[:2].lower() == "0x":
            values.append(int(part[2:] or "0", 16))
        elif part.startswith("0") and len(part) > 1:
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def parse_host_literal(host: str) -> IPAddress | None:
    """The address a URL host spells out literally, in any form a resolver would accept.

    Handles bracketed and bare IPv6 (zone ids kept as scope), dotted-quad, and the legacy
    IPv4 spellings: decimal (2130706433), octal (0177.0.0.1), hex (0x7f.0.0.1, 0x7f000001)
    and short forms (127.1). Returns None for a DNS name.
    """
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.replace("%25", "%"))
        except ValueError:
            return None
    return _inet_aton(host)


def _normalize_host(host: str) -> str:
    """A host as the URLs checked spell it (yarl's raw host): lower case, no trailing dot,
    a non-ASCII name as punycode. Kept in Unicode, an operator's "intranät.example" (or a
    source's feed on it) never matched its own URLs, whose hosts come as "xn--…"."""
    try:
        return lower_host(host.strip())
    except UnicodeError:
        return host.strip().lower().rstrip(".")  # no host name: it matches nothing, as before


@dataclass(frozen=True)
class AddressGuard:
    """Which URLs and addresses an API caller may make us fetch.

    `allowed_hosts` is the operator's escape hatch (names or literal addresses, compared
    case-insensitively): those hosts skip the address and port checks; tests use it for the
    local server. Everything else must be http(s), carry no userinfo, reach public addresses
    only, and (`web_ports_only`) name or imply port 80 or 443. The collector turns the port rule
    off: links in the operator's feeds may name any port, as they always could.
    """

    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    web_ports_only: bool = True

    def __post_init__(self) -> None:
        normalized = frozenset(_normalize_host(h) for h in self.allowed_hosts)
        object.__setattr__(self, "allowed_hosts", normalized)

    def is_allowed_host(self, host: str) -> bool:
        return _normalize_host(host) in self.allowed_hosts

    def scoped(self, own_host: str) -> AddressGuard:
        """This guard for the fetches of one source: any address on its own host, if allowed
        here, and public ones only on every other host, other sources' included. Trusted for
        every feed of a round, an intranet source's host let any feed link the collector to
        any page and port of it, and its text was served as a story."""
        own = _normalize_host(own_host)
        return AddressGuard(self.allowed_hosts & {own}, self.web_ports_only)

    def check_url(self, url: str | URL) -> None:
        """Raise BlockedAddress unless `url` may be fetched; DNS names are checked later, on
        resolution (`GuardedResolver`)."""
        try:
            parsed = url if isinstance(url, URL) else URL(url)
        except (ValueError, TypeError) as e:
            raise BlockedAddress(f"not a valid URL: {url!r}") from e
        if parsed.scheme not in ALLOWED_SCHEMES:
            raise BlockedAddress(f"scheme {parsed.scheme!r} is not allowed: {url}")
        if parsed.raw_user is not None or parsed.raw_password is not None:
            # http://allowed.example@10.0.0.1/ reads as one host to people and another to code.
            # Said without them: this reaches logs and a source's last_error.
            raise BlockedAddress(f"URLs with credentials are not allowed: {parsed.with_user(None)}")
        host = parsed.raw_host
        if not host:
            raise BlockedAddress(f"URL has no host: {url}")
        if self.is_allowed_host(host):
            return
        if "%" in host and ":" not in host:
            # Percent-encoded names are not valid DNS; refuse rather than guess how a
            # resolver might decode them.
            raise BlockedAddress(f"percent-encoded host refused: {url}")
        name = _normalize_host(host)
        if name == "localhost" or name.endswith(".localhost"):
            raise BlockedAddress(f"localhost is not a public host: {url}")  # RFC 6761 6.3
        literal = parse_host_literal(host)
        if literal is not None and not is_public_address(literal):
            raise BlockedAddress(f"address {literal} is not public: {url}")
        if self.web_ports_only and parsed.port not in WEB_PORTS:
            raise BlockedAddress(f"port {parsed.port} is not allowed (only 80 and 443): {url}")

    def check_resolved(self, host: str, addresses: list[str]) -> None:
        """Raise BlockedAddress when a name resolved to any non-public address.

        Any bad address refuses the whole name (rather than filtering it out), because a
        name that mixes public and private answers is a rebinding attempt or a misconfiguration.
        """
        if self.is_allowed_host(host):
            return
        if not addresses:
            raise BlockedAddress(f"{host} resolved to no address")
        bad = [address for address in addresses if not is_public_address(address)]
        if bad:
            # The address is for the operator only: told to API callers, it mapped the
            # intranet's names to their addresses ("db.corp resolves to ... 10.0.3.17").
            raise BlockedAddress(f"{host} resolves to non-public address {bad[0]}",
                                 caller_message=f"{host} resolves to a non-public address")


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses names resolving to non-public addresses.

    Wraps any resolver (aiohttp's default, or a test resolver); the check runs on every
    connection aiohttp opens, redirects included, after DNS, so it also covers DNS rebinding
    between our check and the connect.
    """

    def __init__(self, inner_resolver: AbstractResolver, guard: AddressGuard):
        self._inner = inner_resolver
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if not self._guard.is_allowed_host(host):
            literal = parse_host_literal(host)
            if literal is not None and not is_public_address(literal):
                raise BlockedAddress(f"address {literal} is not public")
        results = await self._inner.resolve(host, port, family)
        self._guard.check_resolved(host, [result["host"] for result in results])
        return results

    async def close(self) -> None:
        await self._inner.close()
