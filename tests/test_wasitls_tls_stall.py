"""wasitls:tls@0.1.0 with several connections in flight (guest tls_poll_server, one wasi:io/poll
loop): peers that stall mid-handshake, and a handshake the guest itself keeps suspended, do not
hold up the other connections of the same guest. Ordering of events only; no timing."""

from __future__ import annotations

import socket
import threading

import pytest

from wasitls_tls_helpers import (TIMEOUT, GuestServer, client_hello_bytes, py_client_context, py_https_get,
                                 wasitls_command)


@pytest.fixture(scope="module")
def poll_server(build_guest):
    return build_guest("tls_poll_server")


def http_body(response: bytes) -> bytes:
    return response.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_stalled_peers_do_not_block_others(poll_server, pkis, version):
    """Three peers stall: one sends nothing, one half a ClientHello, one a whole ClientHello and then
    nothing (the guest has resumed that handshake, which now waits for the peer). A fourth client is
    served to the end meanwhile; the stalled ones fail only when their peers hang up."""
    pki = pkis["ECDSA"]
    cmd = wasitls_command(poll_server, [0, 4, pki.localhost.guest_spec()], pki=pki, listen=True)
    with GuestServer(cmd) as guest:
        _, _, _, hello = client_hello_bytes("localhost", version=version)
        stalled = []
        for n, first_bytes in enumerate([b"", hello[:20], hello]):
            sock = socket.create_connection(("127.0.0.1", guest.port), timeout=TIMEOUT)
            stalled.append(sock)
            sock.sendall(first_bytes)
            guest.wait_for(f"conn={n} accepted")
        guest.wait_for("conn=2 hello=localhost")
        view, response = py_https_get(py_client_context(pki, version), guest.port, "localhost", "/fourth")
        guest.wait_for("conn=3 done")
        served_while_stalled = list(guest.seen)
        for sock in stalled:
            sock.close()
        run = guest.finish()
    assert run.returncode == 0, run
    assert view.version == version and http_body(response) == b"hello 3\n"
    assert [line for line in served_while_stalled if line.startswith("conn=3")] == [
        "conn=3 accepted", "conn=3 hello=localhost", "conn=3 handshake=ok", "conn=3 request=GET /fourth HTTP/1.1",
        "conn=3 done"]
    # nothing ended for the stalled connections before the fourth was done
    assert not [line for line in served_while_stalled if line.startswith(("conn=0", "conn=1", "conn=2"))
                and not line.endswith(("accepted", "hello=localhost"))]
    later = run.lines[len(served_while_stalled):]
    assert sorted(later) == ["conn=0 error=receive-client-hello", "conn=1 error=receive-client-hello",
                             "conn=2 handshake=failed"], run


def test_suspended_handshake_does_not_block_others(poll_server, pkis):
    """The guest keeps connection 0 suspended right after its ClientHello (before it even chose an
    identity) while it serves connections 1 and 2 to the end; then it resumes 0, whose client,
    waiting all along, completes its request."""
    pki = pkis["RSA"]
    cmd = wasitls_command(poll_server, [0, 3, pki.localhost.guest_spec(), "--hold-first"], pki=pki, listen=True)
    with GuestServer(cmd) as guest:
        ctx = py_client_context(pki, "TLSv1.3")
        first: dict = {}
        waiting = threading.Thread(
            target=lambda: first.update(zip(("view", "response"), py_https_get(ctx, guest.port, "localhost", "/zero"))),
            daemon=True)
        waiting.start()
        guest.wait_for("conn=0 held")
        others = [py_https_get(ctx, guest.port, "localhost", f"/{n}")[1] for n in (1, 2)]
        assert "response" not in first  # still in its handshake
        waiting.join(TIMEOUT)
        run = guest.finish()
    assert run.returncode == 0, run
    assert [http_body(r) for r in others] == [b"hello 1\n", b"hello 2\n"]
    assert http_body(first["response"]) == b"hello 0\n"
    lines = run.lines
    assert lines.index("conn=0 held") < lines.index("conn=1 done") < lines.index("conn=2 done") \
        < lines.index("conn=0 resumed") < lines.index("conn=0 done"), run
    assert "conn=0 request=GET /zero HTTP/1.1" in lines
