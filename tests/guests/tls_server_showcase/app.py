"""tls_server_showcase: the seed's "Server features showcase" (TLS.md), on wasitls:tls@0.1.0.

Usage: tls_server_showcase PORT COUNT NAME1 IDENTITY1 IDENTITY2 [options]

IDENTITY1 serves clients whose SNI is NAME1, with ALPN ids `h2`; IDENTITY2 serves everyone else,
with ALPN ids `h2,http/1.1` (as in the seed). Identities are tlsguest.load_identity specs; several
joined by `;` are configured together, in that order of preference.

  --alpn1=.. / --alpn2=..   override those ALPN lists (comma separated; empty for none)
  --no-client-auth          skip `request-client-identity` during the handshake
  --require-cn=NAME         custom check: abort unless the client certificate's subject has CN=NAME
  --hold-after-hello        print `conn=<n> hold` after receive-client-hello and wait for a stdin line
                            before configuring anything (tests check no ServerHello is sent meanwhile)

Per connection n, lines prefixed `conn=<n> `:
  hello.server-name=.. hello.alpn-ids=a,b hello.cipher-suites=0x1302,..   (from receive-client-hello)
  configured=identity1|identity2
  client-cert=<describe_public>|none        (from request-client-identity)
  custom-check=pass|mismatch, abort=done
  handshake=ok|failed, the six facts
  request=<first line>                       (`h2` for an HTTP/2 connection: one that sent the preface)
  post-handshake=<describe_public>|failed     (GET /secure without a client certificate)
The HTTP response body repeats path, alpn-id and the client certificate's fingerprint (and the
size and SHA-256 of a request body, read after any post-handshake request); an h2
connection gets a minimal HTTP/2 answer (SETTINGS, HEADERS :status 200, DATA, GOAWAY).
"""

import hashlib
import struct

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, stdin, tls

import guestnet
from tlsguest import (Failed, accept, await_future, cert_subject, close_socket, describe_public, fail, fingerprint,
                      fmt_alpn, listen, load_identity, parse_args, print_facts, read_request, say)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def alpn_list(text: str) -> list[bytes]:
    return [a.encode() for a in text.split(",") if a]


def h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def read_h2_request(rx, data: bytes) -> bool:
    """Read past the preface until the client's first HEADERS frame; False if the stream ends first."""
    while True:
        if not (data.startswith(H2_PREFACE) or H2_PREFACE.startswith(data)):
            return False  # not HTTP/2 after all
        if data.startswith(H2_PREFACE):
            pos = len(H2_PREFACE)
            while pos + 9 <= len(data):
                length = int.from_bytes(data[pos : pos + 3], "big")
                if data[pos + 3] == 1:  # HEADERS
                    return True
                pos += 9 + length
        try:
            data += rx.blocking_read(4096)
        except Err:
            return False


def leaf(public) -> str:
    if public is None:
        return "none"
    with public:
        chain = public.export_x509_chain()
    return fingerprint(chain[0]) if chain else "empty-chain"


def respond(p: str, tls_output, data: bytes) -> None:
    """Write the answer; a connection that broke is reported, not fatal to the server."""
    try:
        guestnet.write_all(tls_output, data)
    except Err:
        say(p + "write=failed")


def serve(n: int, tcp_input, tcp_output, name1: str, id1, id2, options: dict) -> None:
    p = f"conn={n} "
    tls_connection = tls.ServerConnection(tcp_input, tcp_output)
    with tls_connection:
        handshake = tls_connection.accept()

        # Configure connection properties based on ClientHello:
        try:
            client_hello = await_future(handshake.receive_client_hello())
        except Failed:
            say(p + "receive-client-hello=failed")
            handshake.__exit__(None, None, None)
            return
        with client_hello:
            server_name = client_hello.server_name()
            say(p + f"hello.server-name={server_name or 'none'}")
            say(p + f"hello.alpn-ids={','.join(fmt_alpn(a) for a in client_hello.alpn_ids())}")
            say(p + f"hello.cipher-suites={','.join(f'0x{c:04x}' for c in client_hello.cipher_suites())}")
        if "hold-after-hello" in options:
            say(p + "hold")
            with stdin.get_stdin() as rx:
                try:
                    rx.blocking_read(1)
                except Err:
                    pass
        if server_name == name1:
            handshake.configure_alpn_ids(alpn_list(options.get("alpn1", "h2")))
            handshake.configure_server_identities(id1)
            say(p + "configured=identity1")
        else:
            handshake.configure_alpn_ids(alpn_list(options.get("alpn2", "h2,http/1.1")))
            handshake.configure_server_identities(id2)
            say(p + "configured=identity2")

        # Request client certificate:
        if "no-client-auth" not in options:
            try:
                client_cert = await_future(handshake.request_client_identity())
            except Failed:
                say(p + "client-cert=failed")
                client_cert = None
                # the handshake failed (e.g. the host rejected the certificate): finish reports it
            else:
                chain = client_cert.export_x509_chain() if client_cert is not None else []
                say(p + f"client-cert={describe_public(client_cert)}")
                # Checks here are *in addition* to the host's verification against --client-ca-file.
                wanted = options.get("require-cn")
                if wanted is not None and (not chain or f"CN={wanted}" not in cert_subject(chain[0]).split(",")):
                    say(p + "custom-check=mismatch")
                    with tls.ServerHandshake.abort(handshake) as written:
                        written.block()
                    say(p + "abort=done")
                    return
                if wanted is not None:
                    say(p + "custom-check=pass")

        try:
            tls_input, tls_output = await_future(tls.ServerHandshake.finish(handshake))
        except Failed:
            say(p + "handshake=failed")
            return
        say(p + "handshake=ok")

        # Display TLS connection status:
        print_facts(tls_connection, p)
        alpn = fmt_alpn(tls_connection.alpn_id())

        with tls_input, tls_output:
            http_request = read_request(tls_input)
            if alpn == "h2" and read_h2_request(tls_input, http_request):
                say(p + "request=h2")
                body = f"alpn-id=h2\nclient-identity={leaf(tls_connection.client_identity())}\n".encode()
                respond(p, tls_output, h2_frame(4, 0, 0) + h2_frame(4, 1, 0) + h2_frame(1, 4, 1, b"\x88")
                        + h2_frame(0, 1, 1, body) + h2_frame(7, 0, 0, struct.pack(">II", 1, 0)))
                return
            first_line = http_request.split(b"\r\n", 1)[0].decode("utf-8", "replace")
            say(p + f"request={first_line}")
            path = first_line.split(" ")[1] if first_line.count(" ") >= 2 else ""

            # Perform post-handshake authentication based on HTTP path:
            post = "not-requested"
            had_identity = leaf(tls_connection.client_identity()) != "none"
            if first_line.startswith("GET /secure") and not had_identity:
                try:
                    post = leaf(await_future(tls_connection.request_client_identity()))
                except (Err, Failed):
                    post = "failed"
                say(p + f"post-handshake={post}")

            # A request body (Content-Length) is read only now, after any post-handshake request.
            head, _, received = http_request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                           if line.lower().startswith(b"content-length:")), 0)
            while len(received) < length:
                try:
                    received += tls_input.blocking_read(65536)
                except Err:
                    break
            body = (f"path={path}\nalpn-id={alpn}\nclient-identity={leaf(tls_connection.client_identity())}\n"
                    f"post-handshake={post}\n").encode()
            if length:
                body += f"request-body={len(received)} {hashlib.sha256(received).hexdigest()}\n".encode()
            respond(p, tls_output, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (len(body), body))


class Run(exports.Run):
    def run(self) -> None:
        positional, options = parse_args(environment.get_arguments()[1:])
        if len(positional) != 5:
            fail("usage: tls_server_showcase PORT COUNT NAME1 IDENTITY1 IDENTITY2 [--alpn1=..] [--alpn2=..] "
                 "[--no-client-auth] [--require-cn=..] [--hold-after-hello]")
        port, count, name1 = int(positional[0]), int(positional[1]), positional[2]
        try:
            id1 = [load_identity(spec) for spec in positional[3].split(";")]
            id2 = [load_identity(spec) for spec in positional[4].split(";")]
        except (Err, Failed):
            fail("identities=failed")

        tcp_server = listen(port)
        for n in range(count):
            tcp_client, tcp_input, tcp_output = accept(tcp_server)
            serve(n, tcp_input, tcp_output, name1, id1, id2, options)
            close_socket(tcp_client)
        for identity in id1 + id2:
            identity.__exit__(None, None, None)
        tcp_server.__exit__(None, None, None)
