"""Random sequences of wasitls:tls client calls (guest tls_misuse, `random-<seed>`), fixed seeds:
connect, configure, drive calls, finish, abort, futures got early, late and twice, drops of every
resource in any order, writes and reads on the streams. None may trap, hang or crash the host: every
outcome is a value the guest prints, and every sequence reaches its end."""

from __future__ import annotations

import re

import pytest

from reliability_settings import scaled
from wasitls_tls_helpers import PyTlsServer, py_server_context, run_guest, wasitls_command

SEQUENCES = scaled(1000, 10000)
BATCH = 500  # sequences per guest run


@pytest.fixture(scope="module")
def misuse(build_guest):
    return build_guest("tls_misuse")


def test_random_client_call_sequences(misuse, pkis, passed, _fast_engine):
    pki = pkis["ECDSA"]
    outcomes: dict[str, int] = {}
    for first in range(0, SEQUENCES, BATCH):
        names = [f"random-{seed}" for seed in range(first, min(first + BATCH, SEQUENCES))]
        with PyTlsServer(py_server_context(pki.localhost, "TLSv1.3"), count=len(names), read_everything=True) as server:
            run = run_guest(wasitls_command(misuse, ["client", "127.0.0.1", server.port, "localhost", *names],
                                            pki=pki))
        assert run.returncode == 0, run  # a trap ends the guest with exit 1
        assert "internal error" not in run.err and "Traceback" not in run.err, run.err
        ended = [line for line in run.lines if line.endswith(".end=")]
        assert ended == [f"{name}.end=" for name in names], run
        hangs = [line for line in run.lines if line.endswith("hang")]
        assert not hangs, hangs
        for line in run.lines:
            m = re.fullmatch(r"random-\d+\.\d+\.([a-z-]+)=([a-z]+(?::[a-z]+)?).*", line)
            if m:
                outcomes[f"{m[1]}={m[2]}"] = outcomes.get(f"{m[1]}={m[2]}", 0) + 1
    # the sequences did reach the interesting places, not only early drops
    for wanted in ("get=finish:ok", "get=finish:err", "get=finish:consumed", "write=ok", "abort=written"):
        assert outcomes.get(wanted), (wanted, outcomes)
    passed(f"{SEQUENCES} random wasitls:tls client call sequences (seeds 0-{SEQUENCES - 1}): no trap, no hang, "
           f"{sum(outcomes.values())} calls, {outcomes.get('get=finish:ok', 0)} handshakes finished")
