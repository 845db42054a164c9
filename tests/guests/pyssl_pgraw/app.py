"""pyssl_pgraw: PostgreSQL with a client certificate, on wasitls:tls directly.

Usage: pyssl_pgraw HOST PORT SERVER_NAME USER IDENTITY

SSLRequest on the raw TCP streams; on 'S', TLS on the same streams (the client certificate is the
host-held identity IDENTITY, answered when the server asks); then the startup message, one query
of pg_stat_ssl, and Terminate. Prints `key=value` lines: ssl-response, handshake, auth, row, error.
"""

import struct

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, identities, tls

import guestnet
from tlsguest import Failed, await_future, fail, say

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
QUERY = "SELECT ssl, version, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


class Reader:
    """Exact reads from a wasi:io input stream."""

    def __init__(self, rx):
        self.rx = rx
        self.buffer = b""

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            try:
                self.buffer += self.rx.blocking_read(65536)
            except Err:
                raise Failed("the server closed the connection") from None
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def message(self) -> tuple[bytes, bytes]:
        kind = self.read(1)
        (length,) = struct.unpack("!i", self.read(4))
        return kind, self.read(length - 4)


def error_text(body: bytes) -> str:
    fields = dict((f[:1].decode(), f[1:].decode()) for f in body.split(b"\0") if f)
    return f"{fields.get('S', '?')} {fields.get('C', '?')} {fields.get('M', '?')}"


class Run(exports.Run):
    def run(self) -> None:
        host, port, server_name, user, identity_name = environment.get_arguments()[1:6]
        sock, tcp_in, tcp_out, _ = guestnet.connect(host, int(port))
        guestnet.write_all(tcp_out, SSL_REQUEST)
        answer = Reader(tcp_in).read(1)
        say(f"ssl-response={answer.decode()}")
        if answer != b"S":
            fail("error=server refused TLS")

        connection = tls.ClientConnection(tcp_in, tcp_out)
        handshake = connection.connect(server_name)
        try:
            request = await_future(handshake.receive_client_identity_request())
        except Failed:
            fail("handshake=failed")
        if request is not None:
            identity = identities.get(identity_name)
            tls.ClientIdentityRequest.respond(request, [identity] if identity is not None else [])
        try:
            rx, tx = await_future(tls.ClientHandshake.finish(handshake))
        except Failed:
            fail("handshake=failed")
        say(f"handshake=ok version=0x{connection.protocol_version():04x}")

        startup = struct.pack("!i", 196608) + b"".join(
            k.encode() + b"\0" + v.encode() + b"\0" for k, v in (("user", user), ("database", "postgres"))) + b"\0"
        guestnet.write_all(tx, struct.pack("!i", len(startup) + 4) + startup)
        reader = Reader(rx)
        try:
            while True:
                kind, body = reader.message()
                if kind == b"E":
                    fail(f"error={error_text(body)}")
                if kind == b"R" and body[:4] == b"\0\0\0\0":
                    say("auth=ok")
                if kind == b"Z":
                    break
            query = QUERY.encode() + b"\0"
            guestnet.write_all(tx, b"Q" + struct.pack("!i", len(query) + 4) + query)
            while True:
                kind, body = reader.message()
                if kind == b"D":
                    (count,) = struct.unpack("!h", body[:2])
                    at, values = 2, []
                    for _ in range(count):
                        (n,) = struct.unpack("!i", body[at:at + 4])
                        values.append(body[at + 4:at + 4 + n].decode())
                        at += 4 + n
                    say("row=" + "|".join(values))
                if kind == b"E":
                    fail(f"error={error_text(body)}")
                if kind == b"Z":
                    break
            guestnet.write_all(tx, b"X" + struct.pack("!i", 4))
        except Failed as e:
            fail(f"error={e}")
        with tx, rx, connection, sock:
            pass
