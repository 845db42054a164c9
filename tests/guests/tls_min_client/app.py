"""tls_min_client: the seed's "Minimal client" (TLS.md), on wasitls:tls@0.1.0.

Usage: tls_min_client HOST PORT SERVER_NAME [PATH]

Connects, runs `client-connection.connect(SERVER_NAME).finish()`, sends
`GET PATH HTTP/1.1` and prints the response after a `response:` line.
A failed handshake prints `handshake=failed` and exits with status 1.
"""

from wit_world import exports
from wit_world.imports import environment, tls

import guestnet
from tlsguest import Failed, await_future, fail, read_to_end, say, say_long


class Run(exports.Run):
    def run(self) -> None:
        args = environment.get_arguments()[1:]
        if len(args) not in (3, 4):
            fail("usage: tls_min_client HOST PORT SERVER_NAME [PATH]")
        host, port, server_name = args[0], int(args[1]), args[2]
        path = args[3] if len(args) == 4 else "/"

        # TCP setup:
        sock, tcp_input, tcp_output, _ = guestnet.connect(host, port)

        # TLS setup:
        connection = tls.ClientConnection(tcp_input, tcp_output)
        try:
            tls_input, tls_output = await_future(tls.ClientHandshake.finish(connection.connect(server_name)))
        except Failed:
            fail("handshake=failed")
        say("handshake=ok")

        # Usage:
        request = f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n"
        guestnet.write_all(tls_output, request.encode())
        http_response, ended = read_to_end(tls_input)
        say(f"response-end={ended}")
        say("response:")
        say_long(http_response.decode("utf-8", "replace"))
        # dropped in reverse: the streams (the output sends close_notify), the connection, the socket
        with sock, connection, tls_input, tls_output:
            pass
