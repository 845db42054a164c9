"""ssl_handshakes_raw HOST PORT N: N connections, each a TCP connect, a wasitls:tls client handshake
(client-connection.connect + finish) and a close; prints `handshakes: N` and `seconds: T`."""

import time

from wit_world import exports
from wit_world.imports import environment, tls

import guestnet
from tlsguest import await_future


class Run(exports.Run):
    def run(self) -> None:
        host, port, count = environment.get_arguments()[1:4]
        started = time.perf_counter()
        for _ in range(int(count)):
            sock, rx, tx, _ = guestnet.connect(host, int(port))
            connection = tls.ClientConnection(rx, tx)
            tls_in, tls_out = await_future(tls.ClientHandshake.finish(connection.connect(host)))
            with tls_out, tls_in, connection, sock:
                pass
        seconds = time.perf_counter() - started
        print(f"handshakes: {count}")
        print(f"seconds: {seconds:.6f}", flush=True)
