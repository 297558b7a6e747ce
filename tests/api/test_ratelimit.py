"""Per-client token buckets (api/ratelimit.py): pure, with an injected clock."""

from __future__ import annotations

from api.ratelimit import RateLimiter


def test_a_bucket_empties_and_refills_with_time():
    now = [0.0]
    rl = RateLimiter(clock=lambda: now[0])
    assert all(rl.allow(("a",), 60) for _ in range(60))
    assert not rl.allow(("a",), 60)
    assert rl.allow(("b",), 60)  # another client has its own bucket
    now[0] = 1.0  # a token a second at 60 a minute
    assert rl.allow(("a",), 60) and not rl.allow(("a",), 60)


def test_a_flood_of_new_clients_does_not_reset_a_throttled_one():
    """Memory stays bounded, and the client that keeps knocking stays throttled: clearing
    every bucket when full (as before) handed it a fresh one after 1,000 new addresses."""
    rl = RateLimiter(clock=lambda: 0.0, max_keys=1_000)
    while rl.allow(("abuser",), 10):
        pass
    for i in range(5_000):
        rl.allow((f"10.0.{i // 256}.{i % 256}",), 10)
        if i % 100 == 0:
            assert not rl.allow(("abuser",), 10), i
    assert len(rl._buckets) <= 1_000


def test_an_ipv6_client_is_one_bucket_for_its_whole_64():
    """Keyed by the whole address, a host with a /64 took a fresh address per request (privacy
    addresses do it by themselves) and never met the limit."""
    from api.ratelimit import client_key

    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.7") != client_key("192.0.2.8")
    assert client_key("testclient") == "testclient"
