"""tls_misuse: wasitls:tls@0.1.0 methods called out of order, twice, after finish or abort, and on a
dropped parent; prints what each returned.

Usage:
  tls_misuse client HOST PORT SERVER_NAME SCENARIO... [--id=SPEC --id2=SPEC]   each on a fresh connection
      (a SCENARIO `random-<seed>`, client or server, is a random sequence of calls, the same for a seed)
  tls_misuse server PORT SCENARIO... --id=SPEC          each scenario on the next accepted connection
  tls_misuse identity LABEL=SPEC...                     private-identity.parse / identities.get

Identities are tlsguest.load_identity specs; client scenarios answer certificate requests with them.

Lines are `<scenario>.<step>=<outcome>`; outcomes: `ok`, `err` (an error result), `none`, a value,
or for a future's `get`: `pending`, `ok`, `err` (resolved with an error), `consumed` (read before).
Every scenario ends with `<scenario>.end`.
"""

import random

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, monotonic_clock, poll, tls

import guestnet
from tlsguest import (Failed, accept, close_socket, describe_get, fail, fingerprint, fmt_alpn, fmt_u16, leaf_of,
                      listen, load_identity, parse_args, say)

LONG_ID = b"x" * 256
IDENTITIES: list = []  # --id / --id2: for server scenarios, and for client scenarios answering a request


class Scenario:
    def __init__(self, name: str):
        self.name = name

    def say(self, step: str, outcome) -> None:
        say(f"{self.name}.{step}={outcome}")

    def attempt(self, step: str, call, *args):
        """Call; print ok or err; return the value (None on err)."""
        try:
            value = call(*args)
        except Err:
            self.say(step, "err")
            return None
        self.say(step, "ok")
        return value

    def resolve(self, step: str, fut):
        """Wait for fut without reading it, then `get` it: print the outcome, return the value."""
        while True:
            with fut.subscribe() as p:
                if p.ready():
                    break
                p.block()
        got = fut.get()
        self.say(step, describe_get(got))
        if got is not None and not isinstance(got, Err) and not isinstance(got.value, Err):
            return got.value.value
        return None

    def facts(self, step: str, conn) -> None:
        """All six facts on one line."""
        parts = [f"server-name:{conn.server_name() or 'none'}", f"alpn-id:{fmt_alpn(conn.alpn_id())}",
                 f"protocol-version:{fmt_u16(conn.protocol_version())}",
                 f"cipher-suite:{fmt_u16(conn.cipher_suite())}"]
        client_side = isinstance(conn, tls.ClientConnection)
        mine = conn.client_identity() if client_side else conn.server_identity()
        theirs = conn.server_identity() if client_side else conn.client_identity()
        parts.append(f"own-identity:{'none' if mine is None else 'some'}")
        parts.append(f"peer-identity:{'none' if theirs is None else 'some'}")
        for r in (mine, theirs):
            if r is not None:
                r.__exit__(None, None, None)
        self.say(step, " ".join(parts))


def leaf_of_public(public) -> str:
    return fingerprint(public.export_x509_chain()[0])


def drop(*resources) -> None:
    for r in resources:
        if r is not None:
            r.__exit__(None, None, None)


# -- client scenarios -------------------------------------------------------------------------------

def finish_client(s: Scenario, hs, step: str = "finish"):
    """finish, wait, print the outcome; returns (input, output) or None."""
    return s.resolve(step, tls.ClientHandshake.finish(hs))


def client_scenario(name: str, host: str, port: int, server_name: str) -> None:
    s = Scenario(name)
    sock, rx, tx, _ = guestnet.connect(host, port)
    conn = tls.ClientConnection(rx, tx)
    streams = None
    try:
        if name.startswith("random-"):
            random_client(s, random.Random(int(name[len("random-"):])), conn, server_name)
            conn = None  # random_client dropped it
        elif name == "c-connect-twice":
            hs = s.attempt("connect", conn.connect, server_name)
            s.attempt("connect-again", conn.connect, server_name)
            streams = finish_client(s, hs)
        elif name == "c-connect-bad-name":
            s.attempt("connect-empty", conn.connect, "")
            s.attempt("connect-nul", conn.connect, "local\x00host")
            hs = s.attempt("connect", conn.connect, server_name)
            streams = finish_client(s, hs)
        elif name == "c-alpn-invalid":
            hs = conn.connect(server_name)
            s.attempt("alpn-empty-id", hs.configure_alpn_ids, [b""])
            s.attempt("alpn-256-bytes", hs.configure_alpn_ids, [LONG_ID])
            s.attempt("alpn-255-bytes", hs.configure_alpn_ids, [LONG_ID[:255], b"h2"])
            s.attempt("alpn-none", hs.configure_alpn_ids, [])
            streams = finish_client(s, hs)
        elif name == "c-verify-twice":
            hs = conn.connect(server_name)
            fut = s.attempt("verify", hs.verify_server_identity)
            again = s.attempt("verify-again", hs.verify_server_identity)
            drop(again)
            identity = s.resolve("verify-get", fut)
            s.say("verify-identity", "none" if identity is None else "some")
            drop(identity, fut)
            streams = finish_client(s, hs)
        elif name == "c-out-of-order":
            hs = conn.connect(server_name)
            req = s.attempt("receive-request", hs.receive_client_identity_request)
            s.attempt("verify-after-request", hs.verify_server_identity)
            s.attempt("receive-request-again", hs.receive_client_identity_request)
            request = s.resolve("request-get", req)
            s.say("request", "none" if request is None else "some")
            drop(request, req)
            s.attempt("verify-after-request-resolved", hs.verify_server_identity)
            streams = finish_client(s, hs)
        elif name == "c-configure-after-drive":
            hs = conn.connect(server_name)
            fut = s.attempt("verify", hs.verify_server_identity)
            s.attempt("alpn-while-driving", hs.configure_alpn_ids, [b"h2"])
            drop(s.resolve("verify-get", fut), fut)
            s.attempt("alpn-after-verify", hs.configure_alpn_ids, [b"h2"])
            streams = finish_client(s, hs)
        elif name == "c-future-twice":
            hs = conn.connect(server_name)
            fut = hs.verify_server_identity()
            drop(s.resolve("verify-get", fut))
            s.say("verify-get-again", describe_get(fut.get()))
            drop(fut)
            done = tls.ClientHandshake.finish(hs)
            streams = s.resolve("finish-get", done)
            s.say("finish-get-again", describe_get(done.get()))
            drop(done)
        elif name == "c-facts":
            s.facts("before-connect", conn)
            hs = conn.connect(server_name)
            s.facts("after-connect", conn)
            fut = hs.verify_server_identity()
            drop(s.resolve("verify-get", fut), fut)
            s.facts("after-verify", conn)
            streams = finish_client(s, hs)
            s.facts("after-finish", conn)
        elif name == "c-abort-after-verify":
            hs = conn.connect(server_name)
            fut = hs.verify_server_identity()
            drop(s.resolve("verify-get", fut), fut)
            with tls.ClientHandshake.abort(hs) as written:
                written.block()
            s.say("abort", "written")
            s.facts("after-abort", conn)
            s.attempt("connect-after-abort", conn.connect, server_name)
        elif name == "c-abort-pending-child":
            hs = conn.connect(server_name)
            fut = hs.verify_server_identity()
            req = hs.receive_client_identity_request()
            with tls.ClientHandshake.abort(hs) as written:
                written.block()
            s.say("abort", "written")
            drop(s.resolve("verify-get", fut), fut)
            drop(s.resolve("request-get", req), req)
        elif name == "c-finish-pending-child":
            hs = conn.connect(server_name)
            fut = hs.verify_server_identity()
            req = hs.receive_client_identity_request()
            done = tls.ClientHandshake.finish(hs)
            streams = s.resolve("finish", done)
            drop(done)
            identity = s.resolve("verify-get", fut)
            s.say("verify-identity", "none" if identity is None else "some")
            request = s.resolve("request-get", req)
            s.say("request", "none" if request is None else "some")
            drop(identity, fut, request, req)
        elif name == "c-drop-connection":
            hs = conn.connect(server_name)
            drop(conn)
            conn = None
            s.attempt("alpn-after-drop", hs.configure_alpn_ids, [b"h2"])
            fut = s.attempt("verify-after-drop", hs.verify_server_identity)
            if fut is not None:
                drop(s.resolve("verify-get", fut), fut)
            done = tls.ClientHandshake.finish(hs)
            s.resolve("finish-after-drop", done)
            drop(done)
        elif name == "c-drop-connection-pending":
            hs = conn.connect(server_name)
            fut = hs.verify_server_identity()
            drop(conn)
            conn = None
            drop(s.resolve("verify-get", fut), fut)
            drop(hs)
        elif name == "c-finish-beside-timer":
            # issue 10 F13: poll the finish future beside a timer that has already fired, as a guest
            # with a timeout does; every poll must come back, the timer served, until the handshake ends
            done = tls.ClientHandshake.finish(conn.connect(server_name))
            served = 0
            while True:
                with done.subscribe() as p, monotonic_clock.subscribe_duration(0) as timer:
                    ready = poll.poll([p, timer])
                served += 1 in ready
                if 0 in ready:
                    break
            s.say("timer", "served" if served else "starved")
            streams = s.resolve("finish", done)
            drop(done)
        elif name == "c-drop-connection-before-get":
            # issue 10 F14: the handshake completed, the connection is dropped, then `get`
            hs = conn.connect(server_name)
            done = tls.ClientHandshake.finish(hs)
            while True:
                with done.subscribe() as p:
                    if p.ready():
                        break
                    p.block()
            s.say("finish", "ready")
            drop(conn)
            conn = None
            streams = s.resolve("finish-get-after-drop", done)
            drop(done)
        elif name == "c-drop-connection-after-finish":
            hs = conn.connect(server_name)
            tls_in, tls_out = finish_client(s, hs)
            drop(conn)
            conn = None
            s.attempt("write-after-drop", tls_out.write, b"GET / HTTP/1.1\r\n\r\n")
            s.attempt("read-after-drop", tls_in.read, 10)
            drop(tls_in, tls_out)
        elif name == "c-respond-first-of-two":
            hs = conn.connect(server_name)
            fut = hs.receive_client_identity_request()
            request = s.resolve("request-get", fut)
            drop(fut)
            s.say("request", "none" if request is None else "some")
            if request is not None:
                tls.ClientIdentityRequest.respond(request, IDENTITIES[:2])
                s.say("respond", "returned")
            streams = finish_client(s, hs)
            mine = conn.client_identity()
            s.say("client-identity", "none" if mine is None else leaf_of(mine))
            drop(mine)
        elif name == "c-respond-after-abort":
            hs = conn.connect(server_name)
            fut = hs.receive_client_identity_request()
            request = s.resolve("request-get", fut)
            drop(fut)
            with tls.ClientHandshake.abort(hs) as written:
                written.block()
            s.say("abort", "written")
            if request is not None:
                tls.ClientIdentityRequest.respond(request, IDENTITIES[:1])
                s.say("respond-after-abort", "returned")
        elif name == "c-respond-after-finish":
            hs = conn.connect(server_name)
            fut = hs.receive_client_identity_request()
            request = s.resolve("request-get", fut)
            drop(fut)
            streams = finish_client(s, hs)
            if request is not None:
                tls.ClientIdentityRequest.respond(request, IDENTITIES[:1])
                s.say("respond-after-finish", "returned")
        elif name == "c-drop-futures":
            hs = conn.connect(server_name)
            drop(hs.verify_server_identity())
            s.say("verify-future", "dropped")
            drop(hs.receive_client_identity_request())
            s.say("request-future", "dropped")
            streams = finish_client(s, hs)
            s.facts("after-finish", conn)
        elif name == "c-drop-handshake":
            hs = conn.connect(server_name)
            drop(hs)
            s.facts("after-drop", conn)
            s.attempt("connect-again", conn.connect, server_name)
        else:
            s.say("unknown", "scenario")
        if streams is not None:
            tls_in, tls_out = streams
            guestnet.write_all(tls_out, f"{name}\n".encode())
            drop(tls_in, tls_out)
    finally:
        drop(conn)
        close_socket(sock)
    s.say("end", "")


# -- random sequences (tests/test_reliability_tls.py) ---------------------------------------------------

RANDOM_STEPS = 14
WAIT_NS = 10_000_000_000  # a future not ready within 10 s is reported as `hang`, a host bug


def wait_or_hang(pollable) -> bool:
    """Block on pollable beside a timer; False if the timer came first."""
    with monotonic_clock.subscribe_duration(WAIT_NS) as timer:
        return 0 in poll.poll([pollable, timer])


class RandomRun:
    """What client and server sequences share: futures got early, late and twice, and streams."""

    def __init__(self, s: Scenario, rng: random.Random):
        self.s, self.rng = s, rng
        self.futures: list = []  # (kind, future)
        self.streams = None

    def ops(self) -> list[str]:
        ops = []
        if self.futures:
            ops += ["get"] * 3 + ["get-now", "drop-future"]
        if self.streams is not None:
            ops += ["write", "write", "read", "read", "drop-streams"]
        return ops

    def run(self, tag: str, op: str) -> None:
        s, rng = self.s, self.rng
        if op in ("get", "get-now"):
            index = rng.randrange(len(self.futures))
            kind, fut = self.futures[index]
            if op == "get":
                with fut.subscribe() as p:
                    if not wait_or_hang(p):
                        s.say(tag, f"{kind}:hang")
                        return
            got = fut.get()
            s.say(tag, f"{kind}:{describe_get(got)}")
            if got is not None and rng.random() < 0.7:  # mostly forget a read future; sometimes read it again
                self.futures.pop(index)
                drop(fut)
            if got is not None and not isinstance(got, Err) and not isinstance(got.value, Err):
                value = got.value.value
                if kind == "finish":
                    if self.streams is not None:
                        drop(*self.streams)
                    self.streams = value
                else:
                    drop(value)  # an identity, a client hello, or a request left unanswered
        elif op == "drop-future":
            kind, fut = self.futures.pop(rng.randrange(len(self.futures)))
            drop(fut)
            s.say(tag, "dropped")
        elif op == "write":
            tls_out = self.streams[1]
            try:
                permit = tls_out.check_write()
                tls_out.write(b"x" * min(permit, 16))
                s.say(tag, "ok")
            except Err:
                s.say(tag, "err")
        elif op == "read":
            try:
                s.say(tag, f"ok:{len(self.streams[0].read(16))}")
            except Err:
                s.say(tag, "err")
        elif op == "drop-streams":
            drop(*self.streams)
            self.streams = None
            s.say(tag, "dropped")

    def end(self) -> None:
        if self.streams is not None:
            drop(*self.streams)
        for _, fut in self.futures:
            drop(fut)


def random_client(s: Scenario, rng: random.Random, conn, server_name: str) -> None:
    """A random sequence of wasitls:tls client calls; every outcome printed, none may trap. Only what
    the guest itself must never do is avoided: using a handshake after finish or abort (the bindings
    consume it) and answering a certificate request late (a documented trap)."""
    run = RandomRun(s, rng)
    hs = None
    handshake_used = False
    for step in range(RANDOM_STEPS):
        # repeats weigh the choice: dropping the connection early would end most sequences at once
        ops = ["facts"] + ["drop-conn"] * (step >= 4) if conn is not None else []
        if conn is not None and not handshake_used and hs is None:
            ops += ["connect"] * 6
        if hs is not None:
            ops += ["alpn", "verify", "verify", "request", "request", "finish", "finish", "abort", "drop-hs"]
        ops += run.ops()
        if not ops:
            break
        op = rng.choice(ops)
        tag = f"{step}.{op}"
        if op == "connect":
            hs = s.attempt(tag, conn.connect, server_name)
            handshake_used = hs is not None
        elif op == "facts":
            s.facts(tag, conn)
        elif op == "drop-conn":
            drop(conn)
            conn = None
            s.say(tag, "dropped")
        elif op == "alpn":
            s.attempt(tag, hs.configure_alpn_ids, [b"h2"] if rng.random() < 0.5 else [])
        elif op in ("verify", "request"):
            call = hs.verify_server_identity if op == "verify" else hs.receive_client_identity_request
            fut = s.attempt(tag, call)
            if fut is not None:
                run.futures.append((op, fut))
        elif op == "finish":
            run.futures.append(("finish", tls.ClientHandshake.finish(hs)))
            hs = None
            s.say(tag, "called")
        elif op == "abort":
            with tls.ClientHandshake.abort(hs) as written:
                s.say(tag, "written" if wait_or_hang(written) else "hang")
            hs = None
        elif op == "drop-hs":
            drop(hs)
            hs = None
            s.say(tag, "dropped")
        else:
            run.run(tag, op)
    run.end()
    drop(hs, conn)


def random_server(s: Scenario, rng: random.Random, conn, identity) -> None:
    """The server's counterpart of random_client (post-handshake requests included)."""
    run = RandomRun(s, rng)
    hs = None
    handshake_used = False
    for step in range(RANDOM_STEPS):
        ops = ["facts"] + ["drop-conn"] * (step >= 4) if conn is not None else []
        if conn is not None and handshake_used:
            ops += ["post-handshake"] * (1 if hs is not None else 3)
        if conn is not None and not handshake_used and hs is None:
            ops += ["accept"] * 6
        if hs is not None:
            ops += ["hello", "hello", "alpn", "identities", "identities", "request", "finish", "finish", "abort",
                    "drop-hs"]
        ops += run.ops()
        if not ops:
            break
        op = rng.choice(ops)
        tag = f"{step}.{op}"
        if op == "accept":
            hs = s.attempt(tag, conn.accept)
            handshake_used = hs is not None
        elif op == "facts":
            s.facts(tag, conn)
        elif op == "drop-conn":
            drop(conn)
            conn = None
            s.say(tag, "dropped")
        elif op == "post-handshake":
            fut = s.attempt(tag, conn.request_client_identity)
            if fut is not None:
                run.futures.append(("post-handshake", fut))
        elif op == "alpn":
            s.attempt(tag, hs.configure_alpn_ids, [b"http/1.1"] if rng.random() < 0.5 else [])
        elif op == "identities":
            s.attempt(tag, hs.configure_server_identities, [identity] if rng.random() < 0.8 else [])
        elif op in ("hello", "request"):
            call = hs.receive_client_hello if op == "hello" else hs.request_client_identity
            fut = s.attempt(tag, call)
            if fut is not None:
                run.futures.append((op, fut))
        elif op == "finish":
            run.futures.append(("finish", tls.ServerHandshake.finish(hs)))
            hs = None
            s.say(tag, "called")
        elif op == "abort":
            with tls.ServerHandshake.abort(hs) as written:
                s.say(tag, "written" if wait_or_hang(written) else "hang")
            hs = None
        elif op == "drop-hs":
            drop(hs)
            hs = None
            s.say(tag, "dropped")
        else:
            run.run(tag, op)
    run.end()
    drop(hs, conn)


# -- server scenarios -------------------------------------------------------------------------------

def server_scenario(name: str, listener, identity) -> None:
    s = Scenario(name)
    sock, rx, tx = accept(listener)
    conn = tls.ServerConnection(rx, tx)
    streams = None

    def finish(hs, step="finish"):
        done = tls.ServerHandshake.finish(hs)
        got = s.resolve(step, done)
        drop(done)
        return got

    try:
        if name.startswith("random-"):
            random_server(s, random.Random(int(name[len("random-"):])), conn, identity)
            conn = None  # random_server dropped it
        elif name == "s-accept-twice":
            hs = s.attempt("accept", conn.accept)
            s.attempt("accept-again", conn.accept)
            hs.configure_server_identities([identity])
            streams = finish(hs)
        elif name == "s-alpn-invalid":
            hs = conn.accept()
            s.attempt("alpn-empty-id", hs.configure_alpn_ids, [b""])
            s.attempt("alpn-256-bytes", hs.configure_alpn_ids, [LONG_ID])
            s.attempt("alpn-none", hs.configure_alpn_ids, [])
            s.attempt("identities", hs.configure_server_identities, [identity])
            streams = finish(hs)
        elif name == "s-hello-twice":
            hs = conn.accept()
            fut = s.attempt("hello", hs.receive_client_hello)
            s.attempt("hello-again", hs.receive_client_hello)
            drop(s.resolve("hello-get", fut))
            s.say("hello-get-again", describe_get(fut.get()))
            drop(fut)
            s.attempt("identities-after-hello", hs.configure_server_identities, [identity])
            s.attempt("alpn-after-hello", hs.configure_alpn_ids, [b"http/1.1"])
            streams = finish(hs)
        elif name == "s-out-of-order":
            hs = conn.accept()
            hs.configure_server_identities([identity])
            req = s.attempt("request", hs.request_client_identity)
            s.attempt("hello-after-request", hs.receive_client_hello)
            s.attempt("request-again", hs.request_client_identity)
            s.attempt("identities-after-request", hs.configure_server_identities, [identity])
            s.attempt("alpn-after-request", hs.configure_alpn_ids, [b"h2"])
            streams = finish(hs)
            cert = s.resolve("request-get", req)
            s.say("client-cert", "none" if cert is None else "some")
            drop(cert, req)
        elif name == "s-configure-after-request":
            hs = conn.accept()
            fut = hs.receive_client_hello()
            drop(s.resolve("hello-get", fut), fut)
            hs.configure_server_identities([identity])
            req = hs.request_client_identity()
            drop(s.resolve("request-get", req), req)
            s.attempt("identities-after-request", hs.configure_server_identities, [identity])
            s.attempt("alpn-after-request", hs.configure_alpn_ids, [b"h2"])
            s.attempt("hello-after-request", hs.receive_client_hello)
            streams = finish(hs)
        elif name == "s-facts":
            s.facts("before-accept", conn)
            hs = conn.accept()
            fut = hs.receive_client_hello()
            drop(s.resolve("hello-get", fut), fut)
            s.facts("after-hello", conn)
            hs.configure_server_identities([identity])
            streams = finish(hs)
            s.facts("after-finish", conn)
        elif name == "s-post-handshake-early":
            hs = conn.accept()
            s.attempt("post-before-handshake", conn.request_client_identity)
            hs.configure_server_identities([identity])
            streams = finish(hs)
        elif name == "s-post-handshake-tls12":
            hs = conn.accept()
            hs.configure_server_identities([identity])
            streams = finish(hs)
            s.say("protocol-version", fmt_u16(conn.protocol_version()))
            fut = s.attempt("post-handshake", conn.request_client_identity)
            if fut is not None:
                drop(s.resolve("post-handshake-get", fut), fut)
        elif name == "s-abort-after-hello":
            hs = conn.accept()
            fut = hs.receive_client_hello()
            drop(s.resolve("hello-get", fut), fut)
            with tls.ServerHandshake.abort(hs) as written:
                written.block()
            s.say("abort", "written")
            s.facts("after-abort", conn)
            s.attempt("post-after-abort", conn.request_client_identity)
        elif name == "s-abort-pending-child":
            hs = conn.accept()
            fut = hs.receive_client_hello()
            with tls.ServerHandshake.abort(hs) as written:
                written.block()
            s.say("abort", "written")
            drop(s.resolve("hello-get", fut), fut)
        elif name == "s-drop-future":
            hs = conn.accept()
            drop(hs.receive_client_hello())
            s.say("hello-future", "dropped")
            s.attempt("identities-after-drop", hs.configure_server_identities, [identity])
            streams = finish(hs)
        elif name == "s-post-handshake-twice":
            hs = conn.accept()
            hs.configure_server_identities([identity])
            streams = finish(hs)
            fut = s.attempt("post-handshake", conn.request_client_identity)
            again = s.attempt("post-handshake-while-pending", conn.request_client_identity)
            drop(again)
            cert = s.resolve("post-handshake-get", fut)
            s.say("client-cert", "none" if cert is None else leaf_of_public(cert))
            drop(cert, fut)
            fut = s.attempt("post-handshake-again", conn.request_client_identity)
            if fut is not None:
                cert = s.resolve("post-handshake-again-get", fut)
                s.say("client-cert-again", "none" if cert is None else leaf_of_public(cert))
                drop(cert, fut)
        elif name == "s-no-identity":
            hs = conn.accept()
            finish(hs)
        elif name == "s-drop-connection":
            hs = conn.accept()
            drop(conn)
            conn = None
            s.attempt("hello-after-drop", hs.receive_client_hello)
            s.attempt("identities-after-drop", hs.configure_server_identities, [identity])
            finish(hs, "finish-after-drop")
        elif name == "s-drop-connection-pending":
            hs = conn.accept()
            fut = hs.receive_client_hello()
            drop(conn)
            conn = None
            drop(s.resolve("hello-get", fut), fut)
            drop(hs)
        else:
            s.say("unknown", "scenario")
        if streams is not None:
            tls_in, tls_out = streams
            guestnet.write_all(tls_out, f"{name}\n".encode())
            drop(tls_in, tls_out)
    finally:
        drop(conn)
        close_socket(sock)
    s.say("end", "")


# -- identities -------------------------------------------------------------------------------------

def identity_cases(cases: list[str]) -> None:
    for case in cases:
        label, _, spec = case.partition("=")
        try:
            identity = load_identity(spec)
        except Err:
            say(f"{label}=err")
            continue
        except Failed:
            say(f"{label}=none")
            continue
        with identity:
            with identity.public_identity() as public:
                chain = public.export_x509_chain()
            say(f"{label}=ok {leaf_of(identity)} chain={len(chain)}")


class Run(exports.Run):
    def run(self) -> None:
        positional, options = parse_args(environment.get_arguments()[1:])
        if not positional:
            fail("usage: tls_misuse client HOST PORT NAME SCENARIO... | server PORT SCENARIO... --id=SPEC | "
                 "identity LABEL=SPEC...")
        mode = positional[0]
        IDENTITIES.extend(load_identity(options[key]) for key in ("id", "id2") if key in options)
        if mode == "client":
            host, port, server_name = positional[1], int(positional[2]), positional[3]
            for name in positional[4:]:
                client_scenario(name, host, port, server_name)
        elif mode == "server":
            listener = listen(int(positional[1]))
            for name in positional[2:]:
                server_scenario(name, listener, IDENTITIES[0])
            drop(listener)
        elif mode == "identity":
            identity_cases(positional[1:])
        else:
            fail(f"unknown mode {mode}")
