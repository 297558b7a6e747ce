"""SSRF guard: address classes, every literal spelling of them, DNS answers, the resolver seam."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from aggregator.errors import BlockedAddress
from aggregator.netguard import (
    AddressGuard,
    GuardedResolver,
    is_public_address,
    parse_host_literal,
)
from tests.localsite import FixedResolver

BLOCKED_NETWORKS = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
BLOCKED_V6_NETWORKS = ["::1/128", "::/128", "fc00::/7", "fe80::/10", "ff00::/8", "fec0::/10"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "151.101.0.81", "2606:4700:4700::1111", "2a00:1450:4009::200e"]


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.169.254",  # AWS/GCP/Azure metadata
        "100.100.100.200",  # Alibaba metadata (CGNAT range)
        "192.0.0.192",  # Oracle metadata
        "168.63.129.16",  # Azure's WireServer (a public address, reachable within Azure only)
        "::ffff:168.63.129.16",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "::1",
        "::",
        "fd00:ec2::254",  # AWS IPv6 metadata
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "ff02::1",
        "not an address",
        "",
    ],
)
def test_non_public_addresses_are_refused(ip: str) -> None:
    assert not is_public_address(ip)


@pytest.mark.parametrize("ip", [*PUBLIC, "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_public_addresses_pass(ip: str) -> None:
    assert is_public_address(ip)


@st.composite
def address_in(
    draw: st.DrawFn, networks: list[str]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    network = ipaddress.ip_network(draw(st.sampled_from(networks)))
    offset = draw(st.integers(min_value=0, max_value=network.num_addresses - 1))
    return network.network_address + offset


@settings(deadline=None)  # the machine is noisy; we test results, not speed
@given(address_in(BLOCKED_NETWORKS + BLOCKED_V6_NETWORKS))
def test_every_address_in_blocked_ranges_is_refused(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    assert not is_public_address(str(ip))


@settings(deadline=None)  # the machine is noisy; we test results, not speed
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_ipv6_wrappers_of_ipv4_judge_like_the_ipv4(number: int) -> None:
    v4 = ipaddress.IPv4Address(number)
    mapped = ipaddress.IPv6Address((0xFFFF << 32) | number)
    nat64 = ipaddress.IPv6Address((0x64FF9B << 96) | number)
    assert is_public_address(mapped) == is_public_address(v4)
    assert is_public_address(nat64) == is_public_address(v4)


# -- literal spellings -----------------------------------------------------------------


def _spell(part: int, style: str) -> str:
    if style == "hex":
        return hex(part)
    if style == "octal":
        return "0" + oct(part)[2:]
    return str(part)


@st.composite
def ipv4_spelling(draw: st.DrawFn) -> tuple[ipaddress.IPv4Address, str]:
    """An IPv4 address and one of the spellings inet_aton accepts for it."""
    ip = ipaddress.IPv4Address(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    octets = ip.packed
    n_parts = draw(st.integers(min_value=1, max_value=4))
    head = list(octets[: n_parts - 1])
    last = int.from_bytes(octets[n_parts - 1 :], "big")
    styles = st.sampled_from(["dec", "hex", "octal"])
    text = ".".join(_spell(part, draw(styles)) for part in [*head, last])
    return ip, text


@settings(deadline=None)  # the machine is noisy; we test results, not speed
@given(ipv4_spelling())
def test_parse_host_literal_reads_every_inet_aton_spelling(
    case: tuple[ipaddress.IPv4Address, str],
) -> None:
    ip, text = case
    assert parse_host_literal(text) == ip
    assert ipaddress.IPv4Address(socket.inet_aton(text)) == ip  # the oracle agrees


@settings(deadline=None)  # the machine is noisy; we test results, not speed
@given(st.text(alphabet="0123456789abcdefxX.", min_size=1, max_size=20))
def test_parse_host_literal_agrees_with_inet_aton(text: str) -> None:
    # Wherever the C library would turn a host into an address, so must we (being stricter
    # would let a spelling slip past the guard).
    try:
        expected = ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return
    assert parse_host_literal(text) == expected


@pytest.mark.parametrize(
    "host",
    ["example.com", "256.1.1.1", "1.2.3.4.5", "08.1.1.1", "0x1g.0.0.1", "feeds.bbci.co.uk"],
)
def test_names_and_invalid_numbers_are_not_literals(host: str) -> None:
    assert parse_host_literal(host) is None


# -- AddressGuard.check_url ------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.0.0.5:8080/x",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0x7f.0.0.1/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://017700000001/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1%25eth0]/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://api.localhost/",
        "http://%31%32%37.0.0.1/",
        "http://user:pw@example.com/",
        "http://example.com@10.0.0.1/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "http:///nohost",
    ],
)
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(BlockedAddress):
        AddressGuard().check_url(url)


@settings(deadline=None)  # the machine is noisy; we test results, not speed
@given(address_in(BLOCKED_NETWORKS), st.data())
def test_check_url_refuses_any_spelling_of_a_blocked_ipv4(
    ip: ipaddress.IPv4Address, data: st.DataObject
) -> None:
    number = int(ip)
    spelling = data.draw(
        st.sampled_from([str(ip), str(number), hex(number), f"[::ffff:{ip}]", f"[64:ff9b::{ip}]"])
    )
    with pytest.raises(BlockedAddress):
        AddressGuard().check_url(f"http://{spelling}/path")


@pytest.mark.parametrize(
    "url", ["https://feeds.bbci.co.uk/news/rss.xml", "http://8.8.8.8/", "http://[2606:4700::1111]/"]
)
def test_check_url_passes_public_urls(url: str) -> None:
    AddressGuard().check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34:6379/",  # a public Redis
        "http://example.com:8080/admin",
        "https://example.com:8443/",
        "http://example.com:0/",
        "http://[2606:4700::1111]:22/",
    ],
)
def test_check_url_refuses_ports_other_than_the_webs(url: str) -> None:
    """Any port on a public host could be fetched for an API caller: the server connected to
    a public Redis or admin panel for whoever asked."""
    with pytest.raises(BlockedAddress, match="port"):
        AddressGuard().check_url(url)


def test_the_webs_ports_pass_written_or_implied_and_the_collector_takes_any() -> None:
    for url in ("http://example.com:80/", "https://example.com:443/", "http://example.com:443/",
                "https://example.com/", "http://example.com/"):
        AddressGuard().check_url(url)
    AddressGuard(web_ports_only=False).check_url("http://example.com:8080/feed")
    with pytest.raises(BlockedAddress):  # the address rule still holds there
        AddressGuard(web_ports_only=False).check_url("http://10.0.0.1:8080/feed")


def test_allowed_hosts_skip_the_address_checks() -> None:
    guard = AddressGuard(frozenset({"127.0.0.1", "Intranet.Example."}))
    guard.check_url("http://127.0.0.1:8080/x")  # any port: the operator allowed the host
    guard.check_url("http://intranet.example/x")
    guard.check_resolved("intranet.example", ["10.0.0.1"])
    with pytest.raises(BlockedAddress):
        guard.check_url("http://127.0.0.2/")  # only what is listed
    with pytest.raises(BlockedAddress):
        guard.check_url("ftp://127.0.0.1/")  # the scheme rule still holds


def test_an_allowed_host_in_unicode_matches_its_urls() -> None:
    # The URLs' hosts come as punycode (yarl): a Unicode name, as a sources file or the
    # operator's setting writes it, matched none of them and its own feed was refused.
    guard = AddressGuard(frozenset({"Intranät.Example"}), web_ports_only=False)
    guard.check_url("http://intranät.example:8080/feed")
    guard.check_url("http://xn--intrant-bxa.example/feed")
    guard.check_resolved("xn--intrant-bxa.example", ["10.0.0.1"])
    # A capital sigma before a hyphen: lowered by str.lower() it was a final sigma, another
    # domain than the URL's, and the operator's own host was refused.
    guard = AddressGuard(frozenset({"ΑΣ-ΑΣ.example"}), web_ports_only=False)
    guard.check_resolved(URL("http://ΑΣ-ΑΣ.example:8080/feed").raw_host, ["10.0.0.1"])


# -- after DNS ---------------------------------------------------------------------------


async def test_guarded_resolver_refuses_names_resolving_to_private_addresses() -> None:
    inner = FixedResolver(
        {
            "public.test": ["93.184.216.34"],
            "loopback.test": ["127.0.0.1"],
            "metadata.test": ["169.254.169.254"],
            "mapped.test": ["::ffff:10.0.0.1"],
            "mixed.test": ["93.184.216.34", "10.0.0.1"],  # rebinding-style answer
            "allowed.test": ["10.0.0.7"],
        }
    )
    resolver = GuardedResolver(inner, AddressGuard(frozenset({"allowed.test"})))
    answer = await resolver.resolve("public.test", 443)
    assert [entry["host"] for entry in answer] == ["93.184.216.34"]
    for name in ("loopback.test", "metadata.test", "mapped.test", "mixed.test"):
        with pytest.raises(BlockedAddress):
            await resolver.resolve(name, 80)
    allowed = await resolver.resolve("allowed.test", 80)
    assert allowed[0]["host"] == "10.0.0.7"
    with pytest.raises(BlockedAddress):
        await resolver.resolve("0x7f.0.0.1", 80)  # a literal the inner resolver may accept
    await resolver.close()


def test_a_refused_url_with_credentials_is_not_echoed_with_its_password() -> None:
    # The refusal reaches logs and a source's last_error (a feed that redirects to such a
    # URL): it said the whole URL, password included.
    with pytest.raises(BlockedAddress) as e:
        AddressGuard().check_url("http://reader:s3cret@feeds.example/rss")
    assert "s3cret" not in str(e.value) and "feeds.example/rss" in str(e.value)
