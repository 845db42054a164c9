"""tls_min_server: the seed's "Minimal server" (TLS.md), on wasitls:tls@0.1.0.

Usage: tls_min_server PORT COUNT IDENTITY

IDENTITY is a spec of tlsguest.load_identity (`file:KEY,CERT` from a preopened dir,
`host:NAME` for `wasitls run --identity NAME=...`, ...). Prints `listening on 127.0.0.1:<port>`,
then serves COUNT connections one after the other: handshake with the one identity, read the
request, print its first line, answer `200 OK` with body `ok <n>`.
Per connection it prints `conn=<n> handshake=ok|failed` and `conn=<n> request=<first line>`.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, tls

import guestnet
from tlsguest import Failed, accept, await_future, close_socket, fail, listen, load_identity, read_request, say


class Run(exports.Run):
    def run(self) -> None:
        args = environment.get_arguments()[1:]
        if len(args) != 3:
            fail("usage: tls_min_server PORT COUNT IDENTITY")
        port, count = int(args[0]), int(args[1])

        # Prepare certificates + private key:
        identity = load_identity(args[2])

        # TCP setup:
        tcp_server = listen(port)
        for n in range(count):
            tcp_client, tcp_input, tcp_output = accept(tcp_server)

            # TLS setup:
            connection = tls.ServerConnection(tcp_input, tcp_output)
            handshake = connection.accept()
            handshake.configure_server_identities([identity])
            try:
                tls_input, tls_output = await_future(tls.ServerHandshake.finish(handshake))
            except Failed:
                say(f"conn={n} handshake=failed")
                connection.__exit__(None, None, None)
                close_socket(tcp_client)
                continue
            say(f"conn={n} handshake=ok")

            # Usage:
            http_request = read_request(tls_input)
            first_line = http_request.split(b"\r\n", 1)[0].decode("utf-8", "replace")
            say(f"conn={n} request={first_line}")
            body = f"ok {n}\n".encode()
            try:
                guestnet.write_all(tls_output, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                                   % (len(body), body))
            except Err:
                say(f"conn={n} write=failed")
            with connection, tls_input, tls_output:  # streams first: the output sends close_notify
                pass
            close_socket(tcp_client)
        with identity, tcp_server:
            pass
