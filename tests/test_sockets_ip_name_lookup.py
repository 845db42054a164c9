"""wasi:sockets/ip-name-lookup driven from Python, the way a guest would call it: the policy on names, the
host resolver, and IP literals and names parsed as the URL standard does."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from sockets_helpers import block, code, inherit_network, make
from wasitls.component.values import Err, Variant
from wasitls.wasi.sockets.ip_name_lookup import parse_host
from wasitls.wasi.sockets.network import open_resources

pytestmark = pytest.mark.usefixtures("close_guest_sockets")


def resolve_all(g: SimpleNamespace, name: str) -> list[Variant]:
    stream = g.lookup.resolve_addresses(g.network, name)
    block(stream.subscribe())
    out = []
    while (address := stream.resolve_next_address()) is not None:
        out.append(address)
    assert stream.resolve_next_address() is None
    stream.drop()
    return out


def test_lookup_localhost_allowed():
    g = make(allow_net=["localhost"])
    addresses = resolve_all(g, "localhost")
    expected = {info[4][0] for info in socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)}
    assert Variant("ipv4", (127, 0, 0, 1)) in addresses or "127.0.0.1" not in expected
    assert len(addresses) == len(expected)
    assert open_resources(g.ctx) == []


def test_lookup_refused_is_name_unresolvable():
    g = make(allow_net=["example.com:443"])
    stream = g.lookup.resolve_addresses(g.network, "localhost")
    assert stream.subscribe().ready()
    with pytest.raises(Err) as e:
        stream.resolve_next_address()
    assert e.value.value == "name-unresolvable"
    with pytest.raises(Err, match="name-unresolvable"):
        stream.resolve_next_address()
    stream.drop()


def test_lookup_unknown_name():
    g = make()
    stream = g.lookup.resolve_addresses(g.network, "no-such-host.invalid")
    block(stream.subscribe(), timeout=30)
    with pytest.raises(Err, match="name-unresolvable"):
        stream.resolve_next_address()
    stream.drop()


def test_lookup_ip_literals_and_bad_names():
    g = make()
    assert resolve_all(g, "127.0.0.1") == [Variant("ipv4", (127, 0, 0, 1))]
    assert resolve_all(g, "::1") == [Variant("ipv6", (0, 0, 0, 0, 0, 0, 0, 1))]
    assert resolve_all(g, "[::1]") == [Variant("ipv6", (0, 0, 0, 0, 0, 0, 0, 1))]
    for bad in ["", "a b", "exa#mple.com", "[::1", "1.2.3.256", "0x1.2.3.4.5"]:
        with pytest.raises(Err, match="invalid-argument"):
            g.lookup.resolve_addresses(g.network, bad)


def test_parse_host_follows_the_url_standard():
    assert str(parse_host("127.1")) == "127.0.0.1"
    assert str(parse_host("0x7f.0.0.1")) == "127.0.0.1"
    assert str(parse_host("2130706433")) == "127.0.0.1"
    assert str(parse_host("0177.0.0.1")) == "127.0.0.1"
    assert parse_host("LocalHost.") == "localhost."
    assert parse_host("bücher.example") == "xn--bcher-kva.example"
    assert parse_host("1.example") == "1.example"


# -- wasmtime's own p2 socket test programs, re-expressed over the interface classes -------------
# (crates/test-programs/src/bin/p2_ip_name_lookup.rs: a guest passing them on `wasmtime run -S inherit-network`
# must see the same results here; their helpers are in sockets_helpers.py)

def test_wasmtime_ip_name_lookup():
    g = inherit_network()
    assert Variant("ipv4", (127, 0, 0, 1)) in resolve_all(g, "localhost")
    for name, expected in [
        ("0.0.0.0", Variant("ipv4", (0, 0, 0, 0))), ("127.0.0.1", Variant("ipv4", (127, 0, 0, 1))),
        ("192.0.2.0", Variant("ipv4", (192, 0, 2, 0))), ("::", Variant("ipv6", (0,) * 8)),
        ("::1", Variant("ipv6", (0,) * 7 + (1,))), ("[::]", Variant("ipv6", (0,) * 8)),
        ("2001:0db8:0:0:0:0:0:0", Variant("ipv6", (0x2001, 0xdb8, 0, 0, 0, 0, 0, 0))),
        ("dead:beef::", Variant("ipv6", (0xdead, 0xbeef, 0, 0, 0, 0, 0, 0))),
        ("DEAD:BEEF::0", Variant("ipv6", (0xdead, 0xbeef, 0, 0, 0, 0, 0, 0))),
    ]:
        assert resolve_all(g, name)[:1] == [expected], name
    for bad in ["", " ", "a.b<&>", "127.0.0.1:80", "[::]:80", "http://example.com/"]:
        assert code(g.lookup.resolve_addresses, g.network, bad) == "invalid-argument", bad
