"""The sans-I/O TLS engine (wasitls.tls): engines back to back over memory, the client engine against
real peers on loopback (Python's ssl, `openssl s_server`), refusals and their reasons, identities."""

from __future__ import annotations

import contextlib
import datetime
import gc
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from wasitls.tls import engine as engine_module
from wasitls.tls.engine import (
    MAX_SEND,
    TLS1_2,
    TLS1_3,
    ClientEngine,
    ClientHelloReceived,
    ClientIdentityReceived,
    ClientIdentityRequested,
    Failed,
    HandshakeComplete,
    NeedData,
    PeerClosed,
    PlaintextReady,
    ServerEngine,
    ServerIdentityReceived,
    EngineConfig,
    TLSUsageError,
)
from wasitls.tls.identity import IdentityError, PrivateIdentity, PublicIdentity
from wasitls.tls.trust import TrustError, TrustStore

TIMEOUT = 30
VERSIONS = pytest.mark.parametrize("version", [TLS1_2, TLS1_3], ids=["tls1.2", "tls1.3"])
KEY_TYPES = pytest.mark.parametrize("key_type", [trustme.KeyType.RSA, trustme.KeyType.ECDSA], ids=["rsa", "ecdsa"])


# ---------------------------------------------------------------------------------------------
# Material
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def rsa_ca() -> trustme.CA:
    return trustme.CA(key_type=trustme.KeyType.RSA)


@pytest.fixture(scope="module")
def trust(ca, rsa_ca) -> TrustStore:
    return TrustStore.from_pem(ca.cert_pem.bytes() + rsa_ca.cert_pem.bytes())


def identity_of(leaf: trustme.LeafCert) -> PrivateIdentity:
    return PrivateIdentity.parse(leaf.private_key_pem.bytes(), [p.bytes() for p in leaf.cert_chain_pems])


def chain_der(leaf: trustme.LeafCert) -> list[bytes]:
    return [x509.load_pem_x509_certificate(p.bytes()).public_bytes(serialization.Encoding.DER)
            for p in leaf.cert_chain_pems]


def config(trust: TrustStore, version: int | None = None, **options) -> EngineConfig:
    return EngineConfig(trust, min_version=version or TLS1_2, max_version=version, **options)


def self_signed(name: str) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) of a self-signed certificate for `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------------------------------------
# Two engines back to back, no sockets
# ---------------------------------------------------------------------------------------------
def exchange(client, server, rounds: int = 100) -> tuple[list, list]:
    """Moves bytes both ways until neither side makes progress; returns (client events, server events).
    A terminal event is recorded once although the engines repeat it."""
    seen: tuple[list, list] = ([], [])
    for _ in range(rounds):
        progress = False
        for engine, events in zip((client, server), seen):
            event = engine.next_event()
            if event is None or isinstance(event, (NeedData, PlaintextReady)):
                continue
            if events and events[-1] == event and isinstance(event, (Failed, PeerClosed)):
                continue
            events.append(event)
            progress = True
        for source, sink in ((client, server), (server, client)):
            if data := source.data_to_send():
                sink.receive_data(data)
                progress = True
        if not progress:
            return seen
    raise AssertionError("the engines never settled")


def connected_pair(trust, leaf, version=None, **client_options):
    client = ClientEngine(config(trust, version), "example.com", **client_options)
    server = ServerEngine(config(trust, version), identities=[identity_of(leaf)], pause_on_client_hello=False)
    client_events, server_events = exchange(client, server)
    assert HandshakeComplete() in client_events and HandshakeComplete() in server_events
    return client, server


def deliver(source, sink) -> None:
    if data := source.data_to_send():
        sink.receive_data(data)


@VERSIONS
@KEY_TYPES
def test_handshake_data_and_clean_close(trust, ca, rsa_ca, version, key_type):
    leaf = (rsa_ca if key_type is trustme.KeyType.RSA else ca).issue_cert("example.com", key_type=key_type)
    client, server = connected_pair(trust, leaf, version)

    assert client.protocol_version == server.protocol_version == version
    assert client.protocol_name == ("TLSv1.3" if version == TLS1_3 else "TLSv1.2")
    assert client.cipher_suite == server.cipher_suite
    name = client.cipher_suite_name
    if version == TLS1_3:
        assert name.startswith("TLS_") and (client.cipher_suite >> 8) == 0x13
    else:
        assert name.startswith("TLS_ECDHE_" + ("RSA" if key_type is trustme.KeyType.RSA else "ECDSA") + "_WITH_")
    assert client.peer_identity.export_x509_chain() == chain_der(leaf)
    assert server.local_identity is not None and server.peer_identity is None
    assert client.server_name == server.server_name == "example.com"

    assert client.send_plaintext(b"ping") == 4
    deliver(client, server)
    assert server.read_plaintext() == b"ping"
    assert server.next_event() == NeedData()
    server.send_plaintext(b"pong")
    deliver(server, client)
    assert client.read_plaintext() == b"pong"

    server.close()
    deliver(server, client)
    assert client.read_plaintext() == b""
    assert client.next_event() == PeerClosed(clean=True, reason="peer sent close_notify")
    with pytest.raises(TLSUsageError):
        server.send_plaintext(b"after close")
    assert client.bytes_received == server.bytes_sent > 0
    assert server.plaintext_received == 4 and client.plaintext_sent == 4


def test_bulk_transfer_is_intact_and_send_accepts_at_most_max_send(trust, ca):
    client, server = connected_pair(trust, ca.issue_cert("example.com"))
    payload = os.urandom(3 * MAX_SEND + 12345)
    offset, received, window = 0, bytearray(), memoryview(bytearray(70000))[5:]
    while len(received) < len(payload):
        if offset < len(payload):
            taken = server.send_plaintext(memoryview(payload)[offset:])
            assert 0 < taken <= MAX_SEND
            offset += taken
            deliver(server, client)
        while chunk := client.read_plaintext(50000):
            assert len(chunk) <= 50000
            received += chunk
            n = client.read_plaintext_into(window)  # the copy-saving path, interleaved
            received += window[:n]
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    assert client.read_plaintext_into(bytearray()) == 0


def test_alpn_follows_the_servers_preference(trust, ca):
    leaf = ca.issue_cert("example.com")
    client = ClientEngine(config(trust), "example.com", alpn_ids=[b"h2", b"http/1.1"])
    server = ServerEngine(config(trust), identities=[identity_of(leaf)], alpn_ids=[b"http/1.1", b"h2"])
    _, server_events = exchange(client, server)
    assert server_events[0].alpn_ids == (b"h2", b"http/1.1")
    server.resume()
    exchange(client, server)
    assert client.alpn_id == server.alpn_id == b"http/1.1"


def test_alpn_without_overlap_is_a_fatal_alert(trust, ca):
    """RFC 7301 3.2 (issue 10 T1): a server with ALPN ids of which the client offers none sends the
    fatal no_application_protocol alert; with no ids configured it ignores the client's offer, and a
    client offering nothing is served whatever the server configured."""
    leaf = ca.issue_cert("example.com")
    client = ClientEngine(config(trust), "example.com", alpn_ids=[b"h2"])
    server = ServerEngine(config(trust), identities=[identity_of(leaf)], alpn_ids=[b"imap"],
                          pause_on_client_hello=False)
    client_events, server_events = exchange(client, server)
    assert client_events == [Failed("peer sent alert: no application protocol")]
    assert server_events == [Failed("no ALPN id in common with the client (no_application_protocol sent)")]
    for client_ids, server_ids in (([b"h2"], []), ([], [b"imap"])):
        client = ClientEngine(config(trust), "example.com", alpn_ids=client_ids)
        server = ServerEngine(config(trust), identities=[identity_of(leaf)], alpn_ids=server_ids,
                              pause_on_client_hello=False)
        client_events, _ = exchange(client, server)
        assert HandshakeComplete() in client_events
        assert client.alpn_id is None and server.alpn_id is None
    client = ClientEngine(config(trust), "example.com", alpn_ids=[b"h2"])
    server = ServerEngine(config(trust), identities=[identity_of(leaf)], alpn_ids=[b"imap"],
                          pause_on_client_hello=False, refuse_unmatched_alpn=False)  # CPython ssl's way
    client_events, _ = exchange(client, server)
    assert HandshakeComplete() in client_events and client.alpn_id is None
    with pytest.raises(ValueError):
        ClientEngine(config(trust), "example.com", alpn_ids=[b""])


def test_server_pauses_at_client_hello_and_sends_nothing_until_resumed(trust, ca):
    a = identity_of(ca.issue_cert("a.example"))
    b = identity_of(ca.issue_cert("b.example"))  # same key type: OpenSSL keeps one identity per type
    client = ClientEngine(config(trust), "b.example", alpn_ids=[b"h2"])
    server = ServerEngine(config(trust))
    client_events, server_events = exchange(client, server)

    hello = server_events[0]
    assert isinstance(hello, ClientHelloReceived) and server.paused == hello
    assert hello.server_name == "b.example" and hello.alpn_ids == (b"h2",)
    assert 0x1301 in hello.cipher_suites and 0xC02B in hello.cipher_suites
    for _ in range(3):  # however often it is asked, a paused server stays silent
        assert server.next_event() is None
        assert server.data_to_send() == b""
    assert server.bytes_sent == 0 and client_events == []

    server.configure_server_identities([a, b] if hello.server_name == "a.example" else [b, a])
    server.configure_alpn_ids([b"h2"])
    server.resume()
    client_events, server_events = exchange(client, server)
    assert client_events == [HandshakeComplete()] and server_events == [HandshakeComplete()]
    assert server.local_identity is b
    assert client.peer_identity == b.public_identity()
    assert client.alpn_id == b"h2"
    with pytest.raises(TLSUsageError):
        server.configure_server_identities([a])


def test_server_without_identity_refuses_with_a_reason(trust):
    client = ClientEngine(config(trust), "example.com")
    server = ServerEngine(config(trust), pause_on_client_hello=False)
    client_events, server_events = exchange(client, server)
    assert server_events == [Failed("no server identity configured")]
    assert client_events == [Failed("peer sent alert: handshake failure")]


def test_server_abort_at_client_hello_sends_an_alert(trust):
    client = ClientEngine(config(trust), "example.com")
    server = ServerEngine(config(trust))
    exchange(client, server)
    server.abort()
    client_events, server_events = exchange(client, server)
    assert client_events == [Failed("peer sent alert: handshake failure")]
    assert server.next_event() == Failed("aborted by the application")


@VERSIONS
def test_client_pauses_after_verification_with_the_chain(trust, ca, version):
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("example.com")
    client = ClientEngine(config(trust, version), "example.com", pause_on_verify=True)
    server = ServerEngine(config(trust, version), identities=[identity_of(leaf)], pause_on_client_hello=False)
    client_events, server_events = exchange(client, server)

    assert client_events == [ServerIdentityReceived(PublicIdentity(chain_der(leaf)))]
    assert len(client_events[0].identity.export_x509_chain()) == 2  # leaf + intermediate, as sent
    assert client.data_to_send() == b"" and client.next_event() is None
    assert HandshakeComplete() not in server_events
    client.verify_accept()
    client_events, server_events = exchange(client, server)
    assert client_events == [HandshakeComplete()] and server_events == [HandshakeComplete()]


def test_client_never_pauses_on_a_chain_openssl_rejected(trust, ca):
    client = ClientEngine(config(trust), "wrong.example", pause_on_verify=True)
    server = ServerEngine(config(trust), identities=[identity_of(ca.issue_cert("example.com"))],
                          pause_on_client_hello=False)
    client_events, _ = exchange(client, server)
    assert client_events == [Failed("hostname mismatch: certificate is not valid for 'wrong.example'")]
    assert client.paused is None


@VERSIONS
def test_client_abort_after_verification_sends_an_alert_and_no_data(trust, ca, version):
    client = ClientEngine(config(trust, version), "example.com", pause_on_verify=True)
    server = ServerEngine(config(trust, version), identities=[identity_of(ca.issue_cert("example.com"))],
                          pause_on_client_hello=False)
    exchange(client, server)
    client.abort()
    alert = client.data_to_send()
    if version == TLS1_2:  # still in the clear: exactly one fatal handshake_failure alert record
        assert alert == bytes.fromhex("15 0303 0002 02 28")
    server.receive_data(alert)
    assert server.next_event() == Failed("peer sent alert: handshake failure")
    assert server.read_plaintext() == b"" and not server.handshake_complete
    assert client.next_event() == Failed("aborted by the application")
    with pytest.raises(TLSUsageError):
        client.send_plaintext(b"secret")


@VERSIONS
def test_client_certificate_request_pauses_and_is_answered(trust, ca, version):
    client_leaf = ca.issue_cert("client.example")
    client_id = identity_of(client_leaf)
    client = ClientEngine(config(trust, version), "example.com", pause_on_cert_request=True)
    server = ServerEngine(config(trust, version), identities=[identity_of(ca.issue_cert("example.com"))],
                          pause_on_client_hello=False, client_trust=trust)
    server.request_client_identity()
    client_events, server_events = exchange(client, server)

    assert client_events == [ClientIdentityRequested()]
    assert client.data_to_send() == b""  # no Certificate message while paused
    assert HandshakeComplete() not in server_events
    client.respond_client_identity(client_id)
    client_events, server_events = exchange(client, server)
    assert HandshakeComplete() in client_events
    assert server_events == [ClientIdentityReceived(PublicIdentity(chain_der(client_leaf))), HandshakeComplete()]
    assert client.local_identity is client_id
    assert server.peer_identity == client_id.public_identity()


def test_client_may_decline_a_certificate_request(trust, ca):
    client = ClientEngine(config(trust), "example.com", pause_on_cert_request=True)
    server = ServerEngine(config(trust), identities=[identity_of(ca.issue_cert("example.com"))],
                          pause_on_client_hello=False)
    server.request_client_identity()
    exchange(client, server)
    client.respond_client_identity(None)
    client_events, server_events = exchange(client, server)
    assert server_events == [ClientIdentityReceived(None), HandshakeComplete()]
    assert client.local_identity is None and server.peer_identity is None


def test_client_abort_at_a_certificate_request_sends_an_alert(trust, ca):
    client = ClientEngine(config(trust), "example.com", pause_on_cert_request=True)
    server = ServerEngine(config(trust), identities=[identity_of(ca.issue_cert("example.com"))],
                          pause_on_client_hello=False)
    server.request_client_identity()
    exchange(client, server)
    client.abort()
    client_events, server_events = exchange(client, server)
    assert client_events == [Failed("aborted by the application")]
    assert server_events == [Failed("peer sent alert: internal error")]
    assert client.local_identity is None and server.peer_identity is None


def test_server_refuses_a_client_certificate_from_an_untrusted_ca(trust, ca):
    stranger = identity_of(trustme.CA().issue_cert("client.example"))
    client = ClientEngine(config(trust), "example.com", client_identity=stranger)
    server = ServerEngine(config(trust), identities=[identity_of(ca.issue_cert("example.com"))],
                          pause_on_client_hello=False, client_trust=trust)
    server.request_client_identity()
    client_events, server_events = exchange(client, server)
    assert server_events == [Failed("certificate verify failed: unable to get local issuer certificate"
                                    " (untrusted issuer)")]
    assert client_events[-1] == Failed("peer sent alert: unknown CA")


def test_server_abort_after_client_identity_closes_before_any_data(trust, ca):
    client = ClientEngine(config(trust), "example.com", client_identity=identity_of(ca.issue_cert("c.example")))
    server = ServerEngine(config(trust), identities=[identity_of(ca.issue_cert("example.com"))],
                          pause_on_client_hello=False)
    server.request_client_identity()
    exchange(client, server)
    client.send_plaintext(b"request")
    deliver(client, server)
    server.abort()
    assert server.read_plaintext() == b""
    assert server.next_event() == Failed("aborted by the application")
    deliver(server, client)
    assert client.read_plaintext() == b""
    assert client.next_event() == PeerClosed(clean=True, reason="peer sent close_notify")


def test_post_handshake_client_authentication_tls13(trust, ca):
    client_id = identity_of(ca.issue_cert("client.example"))
    client, server = connected_pair(trust, ca.issue_cert("example.com"), client_identity=client_id)
    assert server.peer_identity is None
    server.request_client_identity()
    client_events, server_events = exchange(client, server)
    assert server_events == [ClientIdentityReceived(client_id.public_identity(), post_handshake=True)]
    assert server.peer_identity == client_id.public_identity()
    client.send_plaintext(b"still flowing")
    deliver(client, server)
    assert server.read_plaintext() == b"still flowing"


def test_post_handshake_client_authentication_is_refused_on_tls12(trust, ca):
    client, server = connected_pair(trust, ca.issue_cert("example.com"), TLS1_2)
    with pytest.raises(TLSUsageError, match="needs TLS 1.3"):
        server.request_client_identity()


def test_ip_literal_is_verified_against_ip_sans_and_not_sent_as_sni(trust, ca):
    leaf = ca.issue_cert("127.0.0.1", "::1")
    for name in ("127.0.0.1", "::1"):
        client = ClientEngine(config(trust), name)
        server = ServerEngine(config(trust), identities=[identity_of(leaf)])
        _, server_events = exchange(client, server)
        assert server_events[0].server_name is None
        server.resume()
        client_events, _ = exchange(client, server)
        assert client_events == [HandshakeComplete()]
    client = ClientEngine(config(trust), "127.0.0.2")
    server = ServerEngine(config(trust), identities=[identity_of(leaf)], pause_on_client_hello=False)
    client_events, _ = exchange(client, server)
    assert client_events == [Failed("IP address mismatch: certificate is not valid for '127.0.0.2'")]


def test_keylog_receives_the_secrets(trust, ca, tmp_path):
    lines: list[str] = []
    leaf = ca.issue_cert("example.com")
    client = ClientEngine(EngineConfig(trust, keylog=lines.append), "example.com")
    server = ServerEngine(EngineConfig(trust, keylog=tmp_path / "keys.log"), identities=[identity_of(leaf)],
                          pause_on_client_hello=False)
    exchange(client, server)
    assert any(line.startswith("CLIENT_HANDSHAKE_TRAFFIC_SECRET ") for line in lines)
    assert sorted(lines) == sorted((tmp_path / "keys.log").read_text().splitlines())


def test_minimum_version_is_enforced(trust, ca):
    client = ClientEngine(EngineConfig(trust, min_version=TLS1_3), "example.com")
    server = ServerEngine(config(trust, TLS1_2), identities=[identity_of(ca.issue_cert("example.com"))],
                          pause_on_client_hello=False)
    client_events, server_events = exchange(client, server)
    assert client_events == [Failed("peer sent alert: protocol version")]
    assert server_events == [Failed("TLS handshake failed: unsupported protocol")]


@pytest.mark.parametrize(
    "make_leaf, server_name, reason",
    [
        (lambda ca: ca.issue_cert("example.com", not_after=datetime.datetime(2020, 1, 1)), "example.com",
         "certificate verify failed: certificate has expired"),
        (lambda ca: ca.issue_cert("example.com", not_before=datetime.datetime(2090, 1, 1),
                                  not_after=datetime.datetime(2091, 1, 1)), "example.com",
         "certificate verify failed: certificate is not yet valid"),
        (lambda ca: ca.issue_cert("example.com"), "wrong.example",
         "hostname mismatch: certificate is not valid for 'wrong.example'"),
        (lambda ca: ca.issue_cert("*.example.com"), "a.b.example.com",
         "hostname mismatch: certificate is not valid for 'a.b.example.com'"),
        (lambda ca: trustme.CA().issue_cert("example.com"), "example.com",
         "certificate verify failed: unable to get local issuer certificate (untrusted issuer)"),
    ],
    ids=["expired", "not-yet-valid", "wrong-host", "wildcard-depth", "untrusted-ca"],
)
def test_client_refuses_bad_server_certificates(trust, ca, make_leaf, server_name, reason):
    client = ClientEngine(config(trust), server_name)
    server = ServerEngine(config(trust), identities=[identity_of(make_leaf(ca))], pause_on_client_hello=False)
    client_events, server_events = exchange(client, server)
    assert client_events == [Failed(reason)]
    assert isinstance(server_events[-1], Failed) and server_events[-1].reason.startswith("peer sent alert: ")
    assert client.plaintext_received == 0 and not client.handshake_complete


def test_client_refuses_a_self_signed_certificate(trust):
    key_pem, cert_pem = self_signed("example.com")
    client = ClientEngine(config(trust), "example.com")
    server = ServerEngine(config(trust), identities=[PrivateIdentity.parse(key_pem, cert_pem)],
                          pause_on_client_hello=False)
    client_events, _ = exchange(client, server)
    assert client_events == [Failed("certificate verify failed: self-signed certificate")]


def test_peer_closing_during_the_handshake(trust):
    client = ClientEngine(config(trust), "example.com")
    assert client.next_event() == NeedData()
    assert client.data_to_send()[:1] == b"\x16"
    client.receive_data(b"")
    assert client.next_event() == Failed("peer closed the connection during the handshake")


def test_a_peer_that_does_not_speak_tls_is_named(trust):
    client = ClientEngine(config(trust), "example.com")
    client.next_event()
    client.receive_data(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    assert client.next_event() == Failed("peer does not speak TLS (received 'HTTP/1.1 400 Bad Request')")
    server = ServerEngine(config(trust))
    server.receive_data(b"\x00\x01\x02binary")
    assert server.next_event() == Failed("peer does not speak TLS (not a TLS record (first bytes 00 01 02 62"
                                         " 69 6e 61 72))")


def test_a_server_answers_a_peer_that_does_not_speak_tls_with_an_alert(trust):
    # OpenSSL answers the broken client (a fatal alert record); the reason still names the first bytes
    server = ServerEngine(config(trust))
    server.receive_data(b"\x17\x03\x03\x00\x05hello")  # application data before any handshake
    assert server.next_event() == Failed("peer does not speak TLS (not a TLS record (first bytes 17 03 03 00"
                                         " 05 68 65 6c))")
    assert server.data_to_send()[:1] == b"\x15"
    server = ServerEngine(config(trust))  # an HTTP client gets no alert from OpenSSL, but is named
    server.receive_data(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert server.next_event() == Failed("peer does not speak TLS (received 'GET / HTTP/1.1')")


def test_truncation_after_the_handshake_is_not_a_clean_close(trust, ca):
    client, server = connected_pair(trust, ca.issue_cert("example.com"))
    server.send_plaintext(b"partial")
    deliver(server, client)
    client.receive_data(b"")
    assert client.read_plaintext() == b"partial"
    assert client.next_event() == PeerClosed(clean=False, reason="truncated: peer closed without close_notify")


def test_usage_errors_name_the_state(trust, ca):
    client = ClientEngine(config(trust), "example.com")
    with pytest.raises(TLSUsageError, match="idle"):
        client.send_plaintext(b"too early")
    with pytest.raises(TLSUsageError):
        client.resume()
    with pytest.raises(TLSUsageError):
        client.respond_client_identity(None)
    client.next_event()
    with pytest.raises(TLSUsageError):
        client.configure_alpn_ids([b"h2"])
    with pytest.raises(ValueError):
        ClientEngine(config(trust), "bad\x00name")


def test_a_released_engine_is_dead_but_safe(trust, ca):
    client, server = connected_pair(trust, ca.issue_cert("example.com"))
    client.send_plaintext(b"unread")
    client.release()
    client.release()
    assert client.data_to_send() == b"" and client.read_plaintext() == b""
    client.receive_data(server.data_to_send() or b"x")
    assert client.next_event() == Failed("the connection was released")
    assert client.protocol_version == TLS1_3  # facts outlive the OpenSSL objects
    with pytest.raises(TLSUsageError):
        client.send_plaintext(b"more")
    client.close()
    client.abort()


def test_thousands_of_connections_do_not_leak(trust, ca):
    statm = Path("/proc/self/statm")
    if not statm.exists():
        pytest.skip("needs Linux /proc to read the resident set size")
    leaf = ca.issue_cert("example.com")
    identity = identity_of(leaf)
    client_config, server_config = config(trust), config(trust)

    def connections(n: int) -> None:
        for _ in range(n):
            client = ClientEngine(client_config, "example.com")
            server = ServerEngine(server_config, identities=[identity], pause_on_client_hello=False)
            exchange(client, server)
            client.send_plaintext(b"x" * 20000)
            deliver(client, server)
            assert len(server.read_plaintext()) == 20000

    def resident() -> int:
        gc.collect()
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    connections(200)  # warm up allocator pools
    before, registered = resident(), len(engine_module._engines)
    connections(1500)
    grown = resident() - before
    assert len(engine_module._engines) == registered
    # Each leaked SSL (with its 16 KiB record buffers) would cost > 30 KiB: 1500 leaks > 45 MiB.
    assert grown < 15 * 1024 * 1024, f"resident set grew by {grown / 2**20:.1f} MiB over 1500 connections"


# ---------------------------------------------------------------------------------------------
# Identities and trust
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def leaf_and_key(ca):
    leaf = ca.issue_cert("example.com")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    return leaf, key


KEY_FORMATS = {
    "pkcs8-pem": (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, None),
    "pkcs8-der": (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, None),
    "sec1-pem": (serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, None),
    "sec1-der": (serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, None),
    "pkcs8-encrypted-pem": (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, b"s3cret"),
    "pkcs8-encrypted-der": (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, b"s3cret"),
    "legacy-encrypted-pem": (serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, b"s3cret"),
}


def encode_key(key, name: str) -> tuple[bytes, bytes | None]:
    encoding, fmt, passphrase = KEY_FORMATS[name]
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    return key.private_bytes(encoding, fmt, encryption), passphrase


@pytest.mark.parametrize("name", sorted(KEY_FORMATS))
def test_identity_parses_key_formats(leaf_and_key, name):
    leaf, key = leaf_and_key
    data, passphrase = encode_key(key, name)
    identity = PrivateIdentity.parse(data, leaf.cert_chain_pems[0].bytes(), passphrase)
    assert identity.public_identity().export_x509_chain() == chain_der(leaf)
    if passphrase:
        with pytest.raises(IdentityError, match="a passphrase is needed"):
            PrivateIdentity.parse(data, leaf.cert_chain_pems[0].bytes())
        with pytest.raises(IdentityError, match="wrong passphrase"):
            PrivateIdentity.parse(data, leaf.cert_chain_pems[0].bytes(), "not it")


def test_identity_parses_pkcs1_rsa_keys_and_serves_with_them(trust, rsa_ca):
    leaf = rsa_ca.issue_cert("example.com", key_type=trustme.KeyType.RSA)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    pkcs1 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption())
    assert pkcs1.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    identity = PrivateIdentity.parse(pkcs1, leaf.cert_chain_pems[0].bytes())
    client = ClientEngine(config(trust), "example.com")
    server = ServerEngine(config(trust), identities=[identity], pause_on_client_hello=False)
    assert exchange(client, server)[0] == [HandshakeComplete()]


def test_identity_accepts_pem_bundles_and_der_lists(ca):
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("example.com")
    der = chain_der(leaf)
    bundle = b"".join(p.bytes() for p in leaf.cert_chain_pems)
    from_bundle = PrivateIdentity.parse(leaf.private_key_pem.bytes(), bundle)
    from_der = PrivateIdentity.parse(leaf.private_key_pem.bytes(), der)
    assert from_bundle.public_identity().export_x509_chain() == der == from_der.public_identity().export_x509_chain()
    assert len(der) == 2


@pytest.mark.parametrize(
    "key, chain, message",
    [
        (b"not a key", None, "cannot parse the private key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", None, "cannot parse the private key"),
        (None, b"garbage", "certificate 0: not a DER or PEM X.509 certificate"),
        (None, [b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"], "no valid PEM CERTIFICATE"),
        (None, [], "the certificate chain is empty"),
        ("other", None, "does not match the end-entity certificate"),
    ],
    ids=["key-garbage", "key-bad-pem", "chain-garbage", "chain-bad-pem", "chain-empty", "key-mismatch"],
)
def test_malformed_identity_input_is_an_identity_error(ca, leaf_and_key, key, chain, message):
    leaf, _ = leaf_and_key
    if key is None:
        key = leaf.private_key_pem.bytes()
    elif key == "other":
        key = ca.issue_cert("other.example").private_key_pem.bytes()
    if chain is None:
        chain = leaf.cert_chain_pems[0].bytes()
    with pytest.raises(IdentityError, match=message):
        PrivateIdentity.parse(key, chain)


def test_der_certificate_with_trailing_bytes_is_refused(leaf_and_key):
    leaf, _ = leaf_and_key
    with pytest.raises(IdentityError, match="trailing bytes"):
        PrivateIdentity.parse(leaf.private_key_pem.bytes(), [chain_der(leaf)[0] + b"\x00"])


def test_trust_store_sources(ca, tmp_path):
    system = TrustStore.system()
    assert system is TrustStore.system()  # built once per process
    assert "roots" in system.description
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    assert "1 roots" in TrustStore.from_pem_file(tmp_path / "ca.pem").description
    with pytest.raises(TrustError, match="cannot read CA file"):
        TrustStore.from_pem_file(tmp_path / "missing.pem")
    with pytest.raises(TrustError, match="no PEM certificate"):
        TrustStore.from_pem(b"nothing here")


def test_default_config_trusts_the_system_not_a_private_ca(ca):
    client = ClientEngine(None, "example.com")
    server = ServerEngine(None, identities=[identity_of(ca.issue_cert("example.com"))], pause_on_client_hello=False)
    client_events, _ = exchange(client, server)
    assert client_events == [Failed("certificate verify failed: unable to get local issuer certificate"
                                    " (untrusted issuer)")]


# ---------------------------------------------------------------------------------------------
# The client engine against real peers over loopback sockets
# ---------------------------------------------------------------------------------------------
def flush(sock: socket.socket, engine) -> None:
    if data := engine.data_to_send():
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            engine.connection_reset()


def feed(sock: socket.socket, engine) -> None:
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        engine.connection_reset()
        return
    engine.receive_data(data)


def next_event(sock: socket.socket, engine):
    """The engine's next event other than NeedData, doing the socket I/O it asks for."""
    while True:
        event = engine.next_event()
        flush(sock, engine)
        if not isinstance(event, NeedData):
            return event
        feed(sock, engine)


def read_until_closed(sock: socket.socket, engine) -> tuple[bytes, object]:
    data = bytearray()
    while True:
        data += engine.read_plaintext()
        event = next_event(sock, engine)
        if event != PlaintextReady():
            return bytes(data), event


@contextlib.contextmanager
def tcp_server(handle):
    """One-connection loopback server running handle(conn) in a thread; yields (port, errors)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                handle(conn)
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], errors
    finally:
        thread.join(TIMEOUT)
        listener.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def server_pem(ca, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("server") / "server.pem"
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(path)
    return path


def python_server_context(server_pem: Path, version: int | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_pem)
    if version == TLS1_2:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@VERSIONS
def test_client_against_python_ssl_server(trust, server_pem, version):
    ctx = python_server_context(server_pem, version)
    ctx.set_alpn_protocols(["h2", "http/1.1"])

    def handle(conn):
        with ctx.wrap_socket(conn, server_side=True) as tls:
            request = tls.recv(1024)
            tls.sendall(b"echo " + request + b" via " + tls.selected_alpn_protocol().encode())
            tls.unwrap()  # close_notify, then wait for the client's

    with tcp_server(handle) as (port, errors), connect(port) as sock:
        client = ClientEngine(config(trust), "localhost", alpn_ids=[b"http/1.1"])
        assert next_event(sock, client) == HandshakeComplete()
        assert client.protocol_version == version and client.alpn_id == b"http/1.1"
        client.send_plaintext(b"hello")
        flush(sock, client)
        data, event = read_until_closed(sock, client)
        assert data == b"echo hello via http/1.1"
        assert event == PeerClosed(clean=True, reason="peer sent close_notify")
        client.close()
        flush(sock, client)
    assert errors == []


def test_client_certificate_to_python_ssl_server_in_and_after_the_handshake(trust, ca, server_pem):
    client_id = identity_of(ca.issue_cert("client.example"))
    ctx = python_server_context(server_pem)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.post_handshake_auth = True  # with CERT_REQUIRED: ask only after the handshake
    ca.configure_trust(ctx)

    def handle(conn):
        with ctx.wrap_socket(conn, server_side=True) as tls:
            assert tls.getpeercert() is None
            tls.verify_client_post_handshake()
            tls.sendall(b"asked")
            tls.recv(1024)  # reading processes the client's certificate
            tls.sendall(repr(tls.getpeercert()["subjectAltName"]).encode())

    with tcp_server(handle) as (port, errors), connect(port) as sock:
        client = ClientEngine(config(trust), "localhost", client_identity=client_id)
        assert next_event(sock, client) == HandshakeComplete()
        received = client.read_plaintext()
        while received != b"asked":
            assert next_event(sock, client) == PlaintextReady()  # plaintext waiting
            received += client.read_plaintext()  # also answers the CertificateRequest
        client.send_plaintext(b"here")
        flush(sock, client)
        data, event = read_until_closed(sock, client)
    assert errors == []
    assert data == b"(('DNS', 'client.example'),)", event


def test_client_refuses_the_python_server_for_a_wrong_name(trust, server_pem):
    ctx = python_server_context(server_pem)

    def handle(conn):
        with contextlib.suppress(ssl.SSLError):
            ctx.wrap_socket(conn, server_side=True)

    with tcp_server(handle) as (port, _), connect(port) as sock:
        client = ClientEngine(config(trust), "example.org")
        assert next_event(sock, client) == Failed("hostname mismatch: certificate is not valid for 'example.org'")


def test_truncation_by_a_real_server(trust, server_pem):
    ctx = python_server_context(server_pem)

    def handle(conn):
        tls = ctx.wrap_socket(conn, server_side=True)
        tls.sendall(b"partial")  # then the socket closes without close_notify

    with tcp_server(handle) as (port, errors), connect(port) as sock:
        client = ClientEngine(config(trust), "localhost")
        assert next_event(sock, client) == HandshakeComplete()
        data, event = read_until_closed(sock, client)
    assert data == b"partial"
    assert event == PeerClosed(clean=False, reason="truncated: peer closed without close_notify")


def test_plain_tcp_server_is_reported_as_not_tls(trust):
    def handle(conn):
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with tcp_server(handle) as (port, _), connect(port) as sock:
        client = ClientEngine(config(trust), "localhost")
        assert next_event(sock, client) == Failed("peer does not speak TLS (received 'HTTP/1.1 400 Bad Request')")


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "closed"])
def test_server_going_away_mid_handshake(trust, reset):
    def handle(conn):
        conn.recv(1024)  # the ClientHello
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    with tcp_server(handle) as (port, _), connect(port) as sock:
        client = ClientEngine(config(trust), "localhost")
        event = next_event(sock, client)
    expected = "connection reset by peer during handshake" if reset else "peer closed the connection during the handshake"
    assert event == Failed(expected)


def test_server_engine_serves_a_python_ssl_client(trust, ca):
    a, b = identity_of(ca.issue_cert("a.example")), identity_of(ca.issue_cert("b.example"))
    client_leaf = ca.issue_cert("client.example")
    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict = {}

    def python_client() -> None:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        client_leaf.configure_cert(ctx)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(listener.getsockname(), timeout=TIMEOUT) as raw:
            with ctx.wrap_socket(raw, server_hostname="b.example") as tls:
                seen["alpn"] = tls.selected_alpn_protocol()
                seen["server"] = tls.getpeercert()["subjectAltName"]
                tls.sendall(b"hello")
                seen["reply"] = tls.recv(100)

    thread = threading.Thread(target=python_client, daemon=True)
    thread.start()
    conn, _ = listener.accept()
    with listener, conn:
        conn.settimeout(TIMEOUT)
        server = ServerEngine(config(trust), client_trust=trust)
        hello = next_event(conn, server)
        assert isinstance(hello, ClientHelloReceived)
        assert hello.server_name == "b.example" and hello.alpn_ids == (b"h2", b"http/1.1")
        server.configure_server_identities([b if hello.server_name == "b.example" else a])
        server.configure_alpn_ids([b"http/1.1"])
        server.request_client_identity()
        server.resume()
        received = next_event(conn, server)
        assert isinstance(received, ClientIdentityReceived)
        assert received.identity.export_x509_chain()[0] == chain_der(client_leaf)[0]  # Python adds the root
        assert next_event(conn, server) == HandshakeComplete()
        request = server.read_plaintext()
        while request != b"hello":
            assert next_event(conn, server) == PlaintextReady()
            request += server.read_plaintext()
        server.send_plaintext(b"hi " + request)
        server.close()
        flush(conn, server)
        thread.join(TIMEOUT)
    assert seen == {"reply": b"hi hello", "alpn": "http/1.1", "server": (("DNS", "b.example"),)}
    assert server.local_identity is b and server.alpn_id == b"http/1.1"


@contextlib.contextmanager
def openssl_s_server(*args: str):
    exe = shutil.which("openssl")
    if exe is None:
        pytest.skip("the openssl command is not installed: apt-get install openssl")
    proc = subprocess.Popen([exe, "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = []
        for line in proc.stdout:
            output.append(line)
            if line.startswith("ACCEPT"):
                yield int(line.rsplit(":", 1)[1])
                break
        else:
            raise AssertionError("openssl s_server did not start:\n" + "".join(output))
    finally:
        proc.kill()
        proc.wait()


@VERSIONS
def test_client_against_openssl_s_server(trust, ca, server_pem, tmp_path, version):
    client_id = identity_of(ca.issue_cert("client.example"))
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    version_flag = "-tls1_3" if version == TLS1_3 else "-tls1_2"
    with openssl_s_server("-cert", str(server_pem), "-www", "-alpn", "h2,http/1.1", version_flag,
                          "-Verify", "1", "-CAfile", str(tmp_path / "ca.pem")) as port, connect(port) as sock:
        client = ClientEngine(config(trust), "localhost", alpn_ids=[b"h2"], pause_on_cert_request=True)
        assert next_event(sock, client) == ClientIdentityRequested()
        client.respond_client_identity(client_id)
        assert next_event(sock, client) == HandshakeComplete()
        assert client.alpn_id == b"h2" and client.protocol_version == version
        client.send_plaintext(b"GET / HTTP/1.0\r\n\r\n")
        flush(sock, client)
        page, event = read_until_closed(sock, client)
    assert page.startswith(b"HTTP/1.0 200 ok")
    assert ("TLSv1.3" if version == TLS1_3 else "TLSv1.2").encode() in page
    assert b"client.example" in page or b"Client certificate" in page
    assert event == PeerClosed(clean=True, reason="peer sent close_notify")


# ---------------------------------------------------------------------------------------------
# The connection's plaintext reads (wasitls.tls_streams) over in-memory raw streams
# ---------------------------------------------------------------------------------------------
class _MemorySource:
    """A raw input backend holding ciphertext; records the largest read asked of it."""

    def __init__(self):
        self.data = bytearray()
        self.ended = False
        self.largest = 0

    def read(self, n: int) -> bytes:
        self.largest = max(self.largest, n)
        if not self.data and self.ended:
            from wasitls.wasi.io.streams import StreamClosed
            raise StreamClosed
        chunk = bytes(self.data[:n])
        del self.data[:n]
        return chunk


class _NullSink:
    def check_write(self) -> int:
        return 1 << 30

    def write(self, data) -> None:
        pass

    def flush(self) -> None:
        pass


def test_connection_reads_fill_what_is_asked_bounded_and_intact(trust, ca):
    from types import SimpleNamespace

    from wasitls.tls_streams import TlsConnection
    from wasitls.wasi.io.streams import MAX_READ, StreamClosed

    client, server = connected_pair(trust, ca.issue_cert("example.com"))
    source = _MemorySource()
    conn = TlsConnection(SimpleNamespace(trace=None), client, source, _NullSink())
    plain = conn.plaintext_source()
    payload = os.urandom(3 * MAX_READ + 54321)
    for offset in range(0, len(payload), MAX_SEND):
        server.send_plaintext(payload[offset:offset + MAX_SEND])
    source.data += server.data_to_send()
    received = bytearray()
    first = plain.read(200000)
    assert len(first) == 200000  # more than one 64 KiB step: the read fills up to what was asked
    received += first
    while len(received) < len(payload):
        chunk = plain.read(4 * MAX_READ)
        assert 0 < len(chunk) <= MAX_READ
        received += chunk
    assert source.largest <= MAX_READ  # raw input is read in bounded steps
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    assert plain.read(1000) == b""  # nothing more now, and no end yet
    server.close()
    source.data += server.data_to_send()
    source.ended = True
    with pytest.raises(StreamClosed):
        plain.read(1000)


def test_a_read_after_a_readiness_check_takes_the_same_path(trust, ca):
    """Polling first decrypts nothing aside: the read after it fills up to what was asked, as
    without the poll, from the connection's one read buffer."""
    from types import SimpleNamespace

    from wasitls.tls_streams import TlsConnection

    client, server = connected_pair(trust, ca.issue_cert("example.com"))
    source = _MemorySource()
    plain = TlsConnection(SimpleNamespace(trace=None), client, source, _NullSink()).plaintext_source()
    assert not plain.poll_ready()  # nothing has arrived
    payload = os.urandom(200000)
    server.send_plaintext(payload)
    source.data += server.data_to_send()
    assert plain.poll_ready()
    first = plain.read(len(payload))
    assert bytes(first) == payload  # one read, though the poll came first


def test_connections_still_open_when_the_guest_ends_are_traced(trust, ca, tmp_path):
    from wasitls.lifetime import Lifetime
    from wasitls.tls.config import build_tls_config
    from wasitls.tls_streams import GuestTls

    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    lines: list[str] = []
    lifetime = Lifetime()
    tls = GuestTls(build_tls_config(ca_file=str(ca_file), trace=lines.append), lifetime)
    server = ServerEngine(config(trust), identities=[identity_of(ca.issue_cert("example.com"))],
                          pause_on_client_hello=False)
    source, sink = _MemorySource(), _CollectingSink()
    conn = tls.client("example.com", source, sink)
    for _ in range(10):  # the handshake over memory: our ciphertext to the server and back
        conn.advance(conn.handshake_settled)
        server.receive_data(bytes(sink.data))
        sink.data.clear()
        server.next_event()
        source.data += server.data_to_send()
    assert conn.facts() is not None and conn.facts().server_name == "example.com"
    assert lines == []
    lifetime.end()
    assert len(lines) == 1 and "server=example.com" in lines[0]
    assert lines[0].endswith("ended=still open when the guest exited")


class _CollectingSink(_NullSink):
    def __init__(self):
        self.data = bytearray()

    def write(self, data) -> None:
        self.data += data
