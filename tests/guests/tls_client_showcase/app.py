"""tls_client_showcase: the seed's "Client features showcase" (TLS.md), on wasitls:tls@0.1.0.

Usage: tls_client_showcase HOST PORT SERVER_NAME [options]

  --alpn=h2[,http/1.1]    ALPN ids to configure (default: h2, as in the seed; `--alpn=` for none)
  --pin-sha256=HEX        custom check: the server's leaf certificate must have this SHA-256
  --expect-cn=NAME        custom check: the server's leaf subject must contain CN=NAME
  --client-id=SPEC        the client identity (tlsguest.load_identity spec) to answer a request with
  --path=/                request path
  --hold-at=verify|request  print `hold` and wait for a line on stdin at that point (tests use it to
                          observe that nothing is sent while the handshake is suspended)

Prints, in order:
  server-identity.received=<describe_public>      after verify-server-identity
  custom-check=pass | custom-check=mismatch, then `abort=done` (exit 1)
  client-identity-request=some|none [responded=<leaf>|responded=nothing]
  handshake=ok|failed
  the six facts (server-name, alpn-id, client-identity, server-identity, protocol-version, cipher-suite)
  response-end=closed|error, `response:` and the response.
A step that fails prints `<step>=failed` and exits with status 1.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, stdin, tls

import guestnet
from tlsguest import (Failed, await_future, cert_subject, describe_public, fail, fingerprint, load_identity,
                      parse_args, print_facts, read_to_end, say, say_long)


def hold(point: str, wanted: str) -> None:
    if point == wanted:
        say(f"hold={point}")
        with stdin.get_stdin() as rx:
            try:
                rx.blocking_read(1)
            except Err:
                pass


class Run(exports.Run):
    def run(self) -> None:
        positional, options = parse_args(environment.get_arguments()[1:])
        if len(positional) != 3:
            fail("usage: tls_client_showcase HOST PORT SERVER_NAME [--alpn=..] [--pin-sha256=..] [--expect-cn=..] "
                 "[--client-id=SPEC] [--path=..] [--hold-at=verify|request]")
        host, port, server_name = positional[0], int(positional[1]), positional[2]
        alpn = [a.encode() for a in options.get("alpn", "h2").split(",") if a]
        held_at = options.get("hold-at", "")

        client_cert = None
        if "client-id" in options:
            try:
                client_cert = load_identity(options["client-id"])
            except (Err, Failed):
                fail("client-id=failed")

        sock, tcp_input, tcp_output, _ = guestnet.connect(host, port)

        tls_connection = tls.ClientConnection(tcp_input, tcp_output)
        try:
            handshake = tls_connection.connect(server_name)
        except Err:
            fail("connect=failed")

        # Configure settings:
        try:
            handshake.configure_alpn_ids(alpn)
        except Err:
            fail("configure-alpn-ids=failed")

        # Receive and validate server certificate:
        try:
            server_cert = await_future(handshake.verify_server_identity())
        except (Err, Failed):
            fail("verify-server-identity=failed")
        chain = server_cert.export_x509_chain() if server_cert is not None else []
        say(f"server-identity.received={describe_public(server_cert)}")
        # Validations here are *in addition* to the host's chain and hostname checks.
        mismatch = not chain
        if chain and "pin-sha256" in options:
            mismatch |= fingerprint(chain[0]) != "sha256:" + options["pin-sha256"].lower()
        if chain and "expect-cn" in options:
            mismatch |= f"CN={options['expect-cn']}" not in cert_subject(chain[0]).split(",")
        if mismatch:
            say("custom-check=mismatch")
            with tls.ClientHandshake.abort(handshake) as written:
                written.block()
            say("abort=done")
            fail("handshake=aborted")
        say("custom-check=pass")
        hold(held_at, "verify")

        # Handle client certificate request:
        try:
            certificate_request = await_future(handshake.receive_client_identity_request())
        except (Err, Failed):
            fail("receive-client-identity-request=failed")
        if certificate_request is not None:
            say("client-identity-request=some")
            hold(held_at, "request")
            if client_cert is not None:
                tls.ClientIdentityRequest.respond(certificate_request, [client_cert])
                with client_cert.public_identity() as offered:
                    say(f"responded={fingerprint(offered.export_x509_chain()[0])}")
            else:
                certificate_request.__exit__(None, None, None)  # dropping it = no certificate
                say("responded=nothing")
        else:
            say("client-identity-request=none")

        try:
            tls_input, tls_output = await_future(tls.ClientHandshake.finish(handshake))
        except Failed:
            fail("handshake=failed")
        say("handshake=ok")

        # Display TLS connection status:
        print_facts(tls_connection)

        path = options.get("path", "/")
        request = f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n"
        guestnet.write_all(tls_output, request.encode())
        http_response, ended = read_to_end(tls_input)
        say(f"response-end={ended}")
        say("response:")
        say_long(http_response.decode("utf-8", "replace"))
        # dropped in reverse: the streams (the output sends close_notify), the connection, the socket
        with sock, tls_connection, tls_input, tls_output:
            pass
