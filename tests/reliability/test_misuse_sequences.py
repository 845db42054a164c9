"""Random sequences of wasitls:tls client and server calls (guest tls_misuse, `random-<seed>`), fixed seeds:
connect, configure, drive calls, finish, abort, futures got early, late and twice, drops of every
resource in any order, writes and reads on the streams. None may trap, hang or crash the host: every
outcome is a value the guest prints, and every sequence reaches its end."""

from __future__ import annotations

import re
import socket
import ssl
import threading

import pytest

from reliability_settings import scaled
from wasitls_tls_helpers import (TIMEOUT, GuestServer, PyTlsServer, py_client_context, py_server_context, run_guest,
                                 wasitls_command)

SEQUENCES = scaled(1000, 10000)
BATCH = 500  # sequences per guest run


@pytest.fixture(scope="module")
def misuse(build_guest):
    return build_guest("tls_misuse")


def count_outcomes(lines: list[str], outcomes: dict[str, int]) -> None:
    for line in lines:
        m = re.fullmatch(r"random-\d+\.\d+\.([a-z-]+)=([a-z-]+(?::[a-z]+)?).*", line)
        if m:
            outcomes[f"{m[1]}={m[2]}"] = outcomes.get(f"{m[1]}={m[2]}", 0) + 1


def check_run(run, names: list[str]) -> None:
    assert run.returncode == 0, run  # a trap ends the guest with exit 1
    assert "internal error" not in run.err and "Traceback" not in run.err, run.err
    ended = [line for line in run.lines if line.endswith(".end=")]
    assert ended == [f"{name}.end=" for name in names], run
    hangs = [line for line in run.lines if line.endswith("hang")]
    assert not hangs, hangs


def test_random_client_call_sequences(misuse, pkis, passed):
    pki = pkis["ECDSA"]
    outcomes: dict[str, int] = {}
    for first in range(0, SEQUENCES, BATCH):
        names = [f"random-{seed}" for seed in range(first, min(first + BATCH, SEQUENCES))]
        with PyTlsServer(py_server_context(pki.localhost, "TLSv1.3"), count=len(names), read_everything=True) as server:
            run = run_guest(wasitls_command(misuse, ["client", "127.0.0.1", server.port, "localhost", *names],
                                            pki=pki))
        check_run(run, names)
        count_outcomes(run.lines, outcomes)
    # the sequences did reach the interesting places, not only early drops
    for wanted in ("get=finish:ok", "get=finish:err", "get=finish:consumed", "write=ok", "abort=written"):
        assert outcomes.get(wanted), f"{wanted} never happened: " + " ".join(f"{k}:{v}" for k, v in sorted(outcomes.items()))
    passed(f"{SEQUENCES} random wasitls:tls client call sequences (seeds 0-{SEQUENCES - 1}): no trap, no hang, "
           f"{sum(outcomes.values())} calls, {outcomes.get('get=finish:ok', 0)} handshakes finished")


def clients(port: int, count: int, ctx: ssl.SSLContext) -> None:
    """One Python client after another: handshake if the guest lets it, say hello, read to the end."""
    for _ in range(count):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"hello\n")
                    while tls.recv(4096):
                        pass
        except (ssl.SSLError, OSError):
            pass


def test_random_server_call_sequences(misuse, pkis, passed):
    pki = pkis["ECDSA"]
    ctx = py_client_context(pki, "TLSv1.3", cert=pki.alice, post_handshake_auth=True)
    outcomes: dict[str, int] = {}
    count = scaled(300, 5000)
    for first in range(0, count, BATCH):
        names = [f"random-{seed}" for seed in range(first, min(first + BATCH, count))]
        cmd = wasitls_command(misuse, ["server", 0, *names, f"--id={pki.localhost.guest_spec()}"], pki=pki,
                              listen=True)
        with GuestServer(cmd) as guest:
            peer = threading.Thread(target=clients, args=(guest.port, len(names), ctx), daemon=True)
            peer.start()
            run = guest.finish()
            peer.join(TIMEOUT)
        check_run(run, names)
        count_outcomes(run.lines, outcomes)
    for wanted in ("get=finish:ok", "get=finish:err", "get=hello:ok", "get=post-handshake:ok", "write=ok",
                   "abort=written"):
        assert outcomes.get(wanted), f"{wanted} never happened: " + " ".join(f"{k}:{v}" for k, v in sorted(outcomes.items()))
    passed(f"{count} random wasitls:tls server call sequences (seeds 0-{count - 1}): no trap, no hang, "
           f"{sum(outcomes.values())} calls, {outcomes.get('get=finish:ok', 0)} handshakes finished")
