"""The capability policy on its own: parsing the options, and the one question `check(use, address)`."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from wasitls import Host, HostError
from wasitls.policy import NetworkUse, Policy, PolicyError
from wasitls.wasi.sockets.network import SocketAddress

U = NetworkUse
SOCKET_USES = [U.TCP_BIND, U.TCP_CONNECT, U.UDP_BIND, U.UDP_CONNECT, U.UDP_OUTGOING_DATAGRAM]
CONNECT_USES = [U.TCP_CONNECT, U.UDP_CONNECT, U.UDP_OUTGOING_DATAGRAM]
BIND_USES = [U.TCP_BIND, U.UDP_BIND]


def at(ip: str, port: int) -> SocketAddress:
    return SocketAddress(ipaddress.ip_address(ip), port)


def check(policy: Policy, use: NetworkUse, address) -> bool:
    result = policy.check(use, address)
    assert isinstance(result, bool)
    return result


# -- defaults --------------------------------------------------------------------------------------

def test_an_empty_policy_denies_every_use():
    policy = Policy.build()
    for use in SOCKET_USES:
        assert not check(policy, use, at("127.0.0.1", 80))
        assert not check(policy, use, at("::1", 0))
    assert not check(policy, U.NAME_LOOKUP, "localhost")
    assert not check(policy, U.NAME_LOOKUP, "127.0.0.1")
    assert not check(policy, U.CREATE_TCP_SOCKET, None)
    assert not check(policy, U.CREATE_UDP_SOCKET, None)
    assert policy.preopens == []


def test_any_grant_allows_making_sockets():
    for kwargs in ({"allow_net": ["127.0.0.1:1"]}, {"allow_listen": ["127.0.0.1:8080"]}):
        policy = Policy.build(**kwargs)
        assert check(policy, U.CREATE_TCP_SOCKET, None) and check(policy, U.CREATE_UDP_SOCKET, None)


# -- each use --------------------------------------------------------------------------------------

def test_allow_net_grants_the_connect_uses_only():
    policy = Policy.build(allow_net=["127.0.0.1:443"])
    for use in CONNECT_USES:
        assert check(policy, use, at("127.0.0.1", 443))
        assert not check(policy, use, at("127.0.0.1", 444))
        assert not check(policy, use, at("127.0.0.2", 443))
    for use in BIND_USES:  # reaching an address is not listening on it
        assert not check(policy, use, at("127.0.0.1", 443))
        assert not check(policy, use, at("0.0.0.0", 0))


def test_allow_listen_grants_the_bind_uses_only():
    policy = Policy.build(allow_listen=["127.0.0.1:8080", "9090", "[::1]:0"])
    for use in BIND_USES:
        assert check(policy, use, at("127.0.0.1", 8080))
        assert not check(policy, use, at("127.0.0.2", 8080))
        assert not check(policy, use, at("127.0.0.1", 8081))
        assert check(policy, use, at("10.1.2.3", 9090))  # a bare port: any local address
        assert check(policy, use, at("::", 9090))
        assert check(policy, use, at("::1", 0))  # port 0: a port the OS picks
        assert not check(policy, use, at("::1", 5000))
    for use in CONNECT_USES:
        assert not check(policy, use, at("127.0.0.1", 8080))
    assert not check(policy, U.NAME_LOOKUP, "localhost")


def test_name_lookup_use():
    policy = Policy.build(allow_net=["Example.COM:443", "10.0.0.1:22", "[2001:db8::1]"])
    assert check(policy, U.NAME_LOOKUP, "example.com")
    assert check(policy, U.NAME_LOOKUP, "EXAMPLE.com.")  # case and the final dot do not matter
    assert not check(policy, U.NAME_LOOKUP, "www.example.com")
    # an IP literal resolves to itself when some port of it may be reached
    assert check(policy, U.NAME_LOOKUP, "10.0.0.1")
    assert check(policy, U.NAME_LOOKUP, "2001:db8::1")
    assert not check(policy, U.NAME_LOOKUP, "10.0.0.2")
    assert check(Policy.build(allow_net=["*"]), U.NAME_LOOKUP, "anything.example")


# -- addresses -------------------------------------------------------------------------------------

def test_ipv6_and_ipv4_mapped_addresses():
    policy = Policy.build(allow_net=["[::1]:80", "127.0.0.1:81", "[::ffff:10.0.0.9]:82"])
    assert check(policy, U.TCP_CONNECT, at("::1", 80))
    assert check(policy, U.TCP_CONNECT, at("0:0:0:0:0:0:0:1", 80))
    assert not check(policy, U.TCP_CONNECT, at("::1", 81))
    # a mapped address is the IPv4 address it maps, in the rule and in the question
    assert check(policy, U.TCP_CONNECT, at("::ffff:127.0.0.1", 81))
    assert check(policy, U.TCP_CONNECT, at("10.0.0.9", 82))
    assert check(policy, U.TCP_CONNECT, at("::ffff:10.0.0.9", 82))
    assert not check(policy, U.TCP_CONNECT, at("::ffff:127.0.0.1", 80))
    listen = Policy.build(allow_listen=["127.0.0.1:7000"])
    assert check(listen, U.TCP_BIND, at("::ffff:127.0.0.1", 7000))


def test_bare_ipv6_allows_every_port():
    policy = Policy.build(allow_net=["::1", "[fe80::2]"])
    assert check(policy, U.TCP_CONNECT, at("::1", 1)) and check(policy, U.UDP_CONNECT, at("::1", 65535))
    assert check(policy, U.TCP_CONNECT, at("fe80::2", 9))


def test_ports():
    policy = Policy.build(allow_net=["127.0.0.1", "127.0.0.2:1", "127.0.0.3:65535"])
    assert all(check(policy, U.TCP_CONNECT, at("127.0.0.1", p)) for p in (1, 80, 65535))
    assert check(policy, U.TCP_CONNECT, at("127.0.0.2", 1))
    assert not check(policy, U.TCP_CONNECT, at("127.0.0.2", 2))
    assert check(policy, U.TCP_CONNECT, at("127.0.0.3", 65535))


def test_wildcard():
    policy = Policy.build(allow_net=["*"], allow_listen=["*:8443"])
    for ip in ("1.2.3.4", "::1", "::ffff:8.8.8.8"):
        assert all(check(policy, use, at(ip, 53)) for use in CONNECT_USES)
    assert check(policy, U.TCP_BIND, at("0.0.0.0", 8443)) and check(policy, U.UDP_BIND, at("::", 8443))
    assert not check(policy, U.TCP_BIND, at("0.0.0.0", 8444))
    port_only = Policy.build(allow_net=["*:443"])
    assert check(port_only, U.TCP_CONNECT, at("9.9.9.9", 443))
    assert not check(port_only, U.TCP_CONNECT, at("9.9.9.9", 80))


def test_names_are_resolved_when_the_policy_is_built():
    policy = Policy.build(allow_net=["localhost:8443"])
    resolved = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in socket.getaddrinfo("localhost", None)}
    assert resolved and policy.net[0].addresses == frozenset(
        ip.ipv4_mapped or ip if ip.version == 6 else ip for ip in resolved)
    for ip in resolved:
        assert check(policy, U.TCP_CONNECT, at(str(ip), 8443))
    assert check(policy, U.NAME_LOOKUP, "localhost")
    # a name that does not resolve now grants no address, but lookups of it stay allowed
    unknown = Policy.build(allow_net=["nonexistent.invalid"])
    assert unknown.net[0].addresses == frozenset()
    assert check(unknown, U.NAME_LOOKUP, "nonexistent.invalid")
    # listening on a name needs it to resolve
    assert check(Policy.build(allow_listen=["localhost:0"]), U.TCP_BIND, at("127.0.0.1", 0))
    with pytest.raises(PolicyError, match="cannot resolve"):
        Policy.build(allow_listen=["nonexistent.invalid:80"])


def test_idna_names_are_stored_in_ascii():
    policy = Policy.build(allow_net=["bücher.example"])
    assert policy.net[0].host == "xn--bcher-kva.example"
    assert check(policy, U.NAME_LOOKUP, "xn--bcher-kva.example")


# -- strict parsing (issue 10: F3, F5, F6) ----------------------------------------------------------

BAD_NET = [
    "", "a..b", "a..b:80", "x" * 64 + ".example", "x" * 64 + ":80", ".", "-a.example",
    "[::1", "[::1]:", "[::1]x", "a:b:c", "1.2.3.4:80:90", "[garbage]:80", "[1.2.3.4]:80",
    "bad name", " localhost", "localhost ", "local\thost", "local\x07host", "localhost:\x00",
    "localhost:", ":80", "localhost:http", "localhost:+80", "localhost: 80", "localhost:٨٠",
    "localhost:0", "localhost:65536", "localhost:99999", "1.2.3.256", "127.1", "0x7f", "0x7f.0x1", "fe80::1%eth0",
    "\u0000", "a/b", "ex ample.com:443", "xn--a.example:1" + "0" * 6,
]


@pytest.mark.parametrize("spec", BAD_NET)
def test_malformed_allow_net_is_refused(spec):
    with pytest.raises(PolicyError) as e:
        Policy.build(allow_net=[spec])
    assert "--allow-net" in str(e.value) and "\n" not in str(e.value)


BAD_LISTEN = ["", "99999", "65536", "-1", "+80", " 80", "٨٠", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999",
              "[::1]", "[::1", "a..b:80", "1.2.3.4:80:90", "a:b:c", "[garbage]:80", "bad name:80", "*"]


@pytest.mark.parametrize("spec", BAD_LISTEN)
def test_malformed_allow_listen_is_refused(spec):
    with pytest.raises(PolicyError) as e:
        Policy.build(allow_listen=[spec])
    assert "--allow-listen" in str(e.value) and "\n" not in str(e.value)


def test_well_formed_options_are_kept_as_given():
    policy = Policy.build(allow_net=["*", "*:443", "localhost.", "[::1]:8443", "10.0.0.1", "under_score.example:1"],
                          allow_listen=["0", "65535", "[::]:0", "0.0.0.0:80"])
    assert [(r.host, r.port) for r in policy.net] == [
        ("*", None), ("*", 443), ("localhost", None), ("::1", 8443), ("10.0.0.1", None), ("under_score.example", 1)]
    assert [(r.address, r.port) for r in policy.listen] == [
        (None, 0), (None, 65535), (ipaddress.ip_address("::"), 0), (ipaddress.ip_address("0.0.0.0"), 80)]


def test_host_reports_bad_options_as_host_errors():
    for kwargs in ({"allow_net": ["a..b:80"]}, {"allow_net": ["[::1"]}, {"allow_listen": ["99999"]},
                   {"dirs": [""]}, {"dirs": ["::/data"]}):
        with pytest.raises(HostError):
            Host(**kwargs)


# -- --dir (issue 10: F4) --------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["", "::/data", "::", "::."])
def test_dir_with_an_empty_host_path_is_refused(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what an empty path used to grant
    with pytest.raises(PolicyError, match="host directory is empty"):
        Policy.build(dirs=[spec])


def test_dir_host_with_empty_guest_path_keeps_wasmtimes_meaning(tmp_path: Path):
    # HOST:: preopens HOST under the guest name "", as `wasmtime run --dir HOST::` does
    policy = Policy.build(dirs=[f"{tmp_path}::"])
    assert [(p.host_path, p.guest_path) for p in policy.preopens] == [(tmp_path.resolve(), "")]


# -- an embedder's own decision ----------------------------------------------------------------------

def test_a_callable_decides_every_address():
    asked = []

    def decide(use, address):
        asked.append((use, address))
        return use is U.TCP_CONNECT and address.port == 443

    policy = Policy(decide=decide)
    assert check(policy, U.CREATE_TCP_SOCKET, None)  # a guest given a decision may make sockets
    assert check(policy, U.CREATE_UDP_SOCKET, None)
    assert check(policy, U.TCP_CONNECT, at("192.0.2.1", 443))
    assert not check(policy, U.TCP_CONNECT, at("192.0.2.1", 80))
    assert not check(policy, U.UDP_BIND, at("0.0.0.0", 443))
    assert asked == [(U.TCP_CONNECT, at("192.0.2.1", 443)), (U.TCP_CONNECT, at("192.0.2.1", 80)),
                     (U.UDP_BIND, at("0.0.0.0", 443))]  # never asked about making a socket


def test_host_takes_a_policy_a_check_object_or_a_callable(tmp_path: Path):
    class OnlyLookups:
        def check(self, use, address):
            return use is U.NAME_LOOKUP

    def only_loopback(use, address):
        return use is not U.NAME_LOOKUP and ipaddress.ip_address(address.ip).is_loopback

    built = Policy.build(allow_net=["127.0.0.1:1"])
    for given, lookup, loopback in ((OnlyLookups(), True, False), (only_loopback, False, True), (built, False, True)):
        host = Host(policy=given, dirs=[str(tmp_path)])
        assert host.policy.check(U.NAME_LOOKUP, "example.com") is lookup
        assert host.policy.check(U.TCP_CONNECT, at("127.0.0.1", 1)) is loopback
        assert [p.host_path for p in host.policy.preopens] == [tmp_path.resolve()]
    with pytest.raises(HostError, match="not both"):
        Host(policy=only_loopback, allow_net=["*"])
    with pytest.raises(HostError, match="policy must be"):
        Host(policy="*")
