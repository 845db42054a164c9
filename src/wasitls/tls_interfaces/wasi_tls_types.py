"""wasi:tls/types@0.2.0-draft: the plain TLS client `wasmtime run -S tls` serves, done by OpenSSL.

The guest hands over its TCP streams; the host runs the handshake (chain and host name verified,
TLS 1.2 minimum, SNI for names) and returns plaintext wasi:io streams.
"""

from __future__ import annotations

from typing import Any

from ..component.linker import HostInterface
from ..component.values import Err, Ok
from ..tls.config import TlsConfigError
from ..tls_streams import GuestTls, TlsConnection
from ..wasi.io.error import IoError
from ..wasi.io.poll import ALWAYS_READY, Pollable
from ..wasi.io.streams import InputStream, OutputStream


class ClientHandshake:
    """The `client-handshake` resource: a server name and the raw streams, until `finish`."""

    def __init__(self, server_name: str, input: InputStream, output: OutputStream):
        self.server_name = server_name
        self.input = input
        self.output = output


class ClientConnection:
    """The `client-connection` resource."""

    def __init__(self, conn: TlsConnection):
        self.conn = conn

    def close_output(self) -> None:
        self.conn.close_output()

    def drop(self) -> None:
        self.conn.unhold()  # the plaintext streams may outlive it


class FutureClientStreams:
    """The `future-client-streams` resource: the handshake in progress."""

    def __init__(self, conn: TlsConnection | None, refused: str | None = None):
        self.conn = conn
        self.refused = refused  # why no connection was even started (an invalid server name)
        self.taken = False

    def subscribe(self) -> Pollable:
        return Pollable(ALWAYS_READY if self.conn is None else self.conn.when(self.conn.handshake_settled))

    def get(self) -> Any:
        if self.taken:
            return Err(None)
        if self.conn is None:
            self.taken = True
            return Ok(Err(IoError(self.refused)))
        if not self.conn.when(self.conn.handshake_settled).poll_ready():
            return None
        self.taken = True
        if self.conn.failure is not None:
            self.conn.release()
            return Ok(Err(IoError(self.conn.failure)))
        return Ok(Ok((ClientConnection(self.conn),
                      InputStream(self.conn.plaintext_source()),
                      OutputStream(self.conn.plaintext_sink()))))

    def drop(self) -> None:
        if not self.taken and self.conn is not None:  # nobody will ever hold this connection
            self.conn.release()


class Types(HostInterface):
    wit = "wasi:tls/types@0.2.0-draft"
    resources = {
        "client-handshake": ClientHandshake,
        "client-connection": ClientConnection,
        "future-client-streams": FutureClientStreams,
    }

    def __init__(self, tls: GuestTls):
        self.tls = tls

    def new_client_handshake(self, server_name: str, input: InputStream, output: OutputStream) -> ClientHandshake:
        return ClientHandshake(server_name, input, output)

    def client_handshake_finish(self, this: ClientHandshake) -> FutureClientStreams:
        try:
            conn = self.tls.client(this.server_name, this.input.source, this.output.sink)
        except TlsConfigError as e:  # the system trust store could not be loaded (traced)
            return FutureClientStreams(None, str(e))
        except ValueError:  # an empty name or one with a NUL: an error value, as on wasmtime
            return FutureClientStreams(None, "invalid server name")
        conn.advance(conn.handshake_settled)  # writes the ClientHello now
        return FutureClientStreams(conn)
