"""Micro-benchmark: TLS throughput over memory, the wasitls engine against Python's ssl.

Moves N MiB of application data server -> client in 64 KiB writes, with no sockets, and prints
MiB/s for each pairing plus the ratio the project cares about (engine client / ssl client):
  ssl    -> ssl     SSLObject pair over MemoryBIO (the native baseline)
  ssl    -> engine  the same server, the wasitls ClientEngine as the client (read_plaintext,
                    and read_plaintext_into a reusable buffer)
  engine -> engine  ServerEngine and ClientEngine back to back

    python bench/tls_engine.py [MiB]        (default 256)
"""

from __future__ import annotations

import ssl
import sys
import tempfile
import time
from pathlib import Path

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from wasitls.tls.engine import ClientEngine, HandshakeComplete, ServerEngine, EngineConfig  # noqa: E402
from wasitls.tls.identity import PrivateIdentity  # noqa: E402
from wasitls.tls.trust import TrustStore  # noqa: E402

CHUNK = 64 * 1024


class SslSide:
    """An SSLObject over two MemoryBIOs, with the engine's method names."""

    def __init__(self, context: ssl.SSLContext, server: bool):
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server, server_hostname=None if server else "example.com"
        )

    def receive_data(self, data: bytes) -> None:
        self.incoming.write(data)

    def data_to_send(self) -> bytes:
        return self.outgoing.read()

    def handshake(self) -> bool:
        try:
            self.obj.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False

    def send_plaintext(self, data: bytes) -> int:
        return self.obj.write(data)

    def read_plaintext(self, n: int) -> bytes:
        try:
            return self.obj.read(n)
        except ssl.SSLWantReadError:
            return b""


class EngineSide:
    def __init__(self, engine, *, into: bool = False):
        self.engine = engine
        self.receive_data = engine.receive_data
        self.data_to_send = engine.data_to_send
        self.send_plaintext = engine.send_plaintext
        self.read_plaintext = engine.read_plaintext
        if into:  # decrypt into one reusable buffer, as a host writing into guest memory would
            self.buffer = memoryview(bytearray(CHUNK))
            self.read_plaintext = self.read_into

    def read_into(self, n: int) -> memoryview:
        return self.buffer[: self.engine.read_plaintext_into(self.buffer[:n])]

    def handshake(self) -> bool:
        while (event := self.engine.next_event()) is not None:
            if isinstance(event, HandshakeComplete):
                return True
            if type(event).__name__ != "NeedData":
                raise RuntimeError(event)
            return False
        return True


def forward(source, sink) -> None:
    if data := source.data_to_send():  # never b"": for an engine that means end of stream
        sink.receive_data(data)


def connect(client, server) -> None:
    done = [False, False]
    for _ in range(20):
        for i, side in enumerate((client, server)):
            done[i] = done[i] or side.handshake()
        forward(client, server)
        forward(server, client)
        if all(done):
            return
    raise RuntimeError("handshake did not finish")


def transfer(client, server, total: int) -> float:
    payload = b"x" * CHUNK
    received = 0
    start = time.perf_counter()
    sent = 0
    while received < total:
        if sent < total:
            sent += server.send_plaintext(payload)
            forward(server, client)
        while data := client.read_plaintext(CHUNK):
            received += len(data)
    return time.perf_counter() - start


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    total = mib * 1024 * 1024
    ca = trustme.CA()
    leaf = ca.issue_cert("example.com")
    with tempfile.TemporaryDirectory() as tmp:
        chain = Path(tmp, "chain.pem")
        chain.write_bytes(b"".join(p.bytes() for p in [leaf.private_key_pem, *leaf.cert_chain_pems]))
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(chain)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    config = EngineConfig(TrustStore.from_pem(ca.cert_pem.bytes()))
    identity = PrivateIdentity.parse(leaf.private_key_pem.bytes(), [p.bytes() for p in leaf.cert_chain_pems])

    def engine_client(into: bool = False):
        return EngineSide(ClientEngine(config, "example.com"), into=into)

    def engine_server():
        return EngineSide(ServerEngine(config, identities=[identity], pause_on_client_hello=False))

    pairings = {
        "ssl    -> ssl   ": lambda: (SslSide(client_ctx, False), SslSide(server_ctx, True)),
        "ssl    -> engine": lambda: (engine_client(), SslSide(server_ctx, True)),
        "ssl    -> engine (read_plaintext_into)": lambda: (engine_client(True), SslSide(server_ctx, True)),
        "engine -> engine": lambda: (engine_client(), engine_server()),
    }
    rates = {}
    for name, make in pairings.items():
        best = float("inf")
        for _ in range(3):
            client, server = make()
            connect(client, server)
            best = min(best, transfer(client, server, total))
        rates[name] = mib / best
        print(f"{name:40} {rates[name]:6.0f} MiB/s  ({mib} MiB in {best:.3f} s, best of 3)")
    baseline = rates["ssl    -> ssl   "]
    print(f"engine client / ssl client: {rates['ssl    -> engine'] / baseline:.2f}x"
          f" (read_plaintext), {rates['ssl    -> engine (read_plaintext_into)'] / baseline:.2f}x (read_plaintext_into)")
    print(f"engine pair   / ssl pair:   {rates['engine -> engine'] / baseline:.2f}x")


if __name__ == "__main__":
    main()
