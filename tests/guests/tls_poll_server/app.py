"""tls_poll_server: a TLS server keeping several connections in flight with wasi:io/poll.

Usage: tls_poll_server PORT COUNT IDENTITY [--hold-first]

Serves COUNT connections, all at once: every connection is a generator that yields the pollable
it waits on, and one `poll` call over all of them (and the listener) picks what runs next, so a
peer that stalls mid-handshake does not hold up the others.

  --hold-first   keep connection 0 suspended after its ClientHello (before configuring its
                 identity) until every other connection has finished; then resume it

Lines: `listening on ...`, then per connection `conn=<n> accepted`, `conn=<n> hello=<sni>`,
`conn=<n> handshake=ok|failed`, `conn=<n> request=<first line>`, `conn=<n> done` (or
`conn=<n> error=<where>`). The response body is `hello <n>`.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, network, poll, streams, tls

from tlsguest import close_socket, fail, listen, load_identity, parse_args, say


class Stop(Exception):
    pass


def wait_future(fut):
    """Yield the future's pollable until it resolves; its value, or Stop on an error."""
    with fut:
        while (got := fut.get()) is None:
            yield fut.subscribe()
    if isinstance(got, Err) or isinstance(got.value, Err):
        raise Stop
    return got.value.value


def read_head(rx):
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = rx.read(4096)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                return data
            raise Stop
        if chunk:
            data += chunk
        else:
            yield rx.subscribe()
    return data


def write_all(tx, data: bytes):
    view = memoryview(data)
    try:
        while view:
            budget = tx.check_write()
            if budget == 0:
                yield tx.subscribe()
                continue
            tx.write(bytes(view[:budget]))
            view = view[budget:]
        tx.flush()
        while tx.check_write() == 0:
            yield tx.subscribe()
    except Err:
        raise Stop


class Gate:
    """Connection 0 waits here until the others are done (with --hold-first)."""

    def __init__(self, enabled: bool):
        self.open = not enabled


def serve(n: int, rx, tx, identity, gate: Gate, others_done):
    p = f"conn={n} "
    connection = tls.ServerConnection(rx, tx)
    with connection:
        handshake = connection.accept()
        try:
            hello = yield from wait_future(handshake.receive_client_hello())
        except Stop:
            handshake.__exit__(None, None, None)
            say(p + "error=receive-client-hello")
            return
        with hello:
            say(p + f"hello={hello.server_name() or 'none'}")
        if n == 0 and not gate.open:
            say(p + "held")
            while not others_done():
                yield None  # parked: resumed by the main loop when the others are done
            say(p + "resumed")
        handshake.configure_server_identities([identity])
        try:
            tls_in, tls_out = yield from wait_future(tls.ServerHandshake.finish(handshake))
        except Stop:
            say(p + "handshake=failed")
            return
        say(p + "handshake=ok")
        with tls_in, tls_out:
            try:
                head = yield from read_head(tls_in)
                first_line = head.split(b"\r\n", 1)[0].decode("utf-8", "replace")
                say(p + f"request={first_line}")
                body = f"hello {n}\n".encode()
                yield from write_all(tls_out, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                                     % (len(body), body))
            except Stop:
                say(p + "error=io")
                return
    say(p + "done")


class Run(exports.Run):
    def run(self) -> None:
        positional, options = parse_args(environment.get_arguments()[1:])
        if len(positional) != 3:
            fail("usage: tls_poll_server PORT COUNT IDENTITY [--hold-first]")
        port, count = int(positional[0]), int(positional[1])
        identity = load_identity(positional[2])
        gate = Gate("hold-first" in options)
        listener = listen(port)

        accepted = 0
        # n -> [generator, pollable or None (parked), tcp socket]
        tasks: dict[int, list] = {}
        finished: set[int] = set()

        def others_done() -> bool:
            return accepted == count and finished >= set(range(1, count))

        def step(n: int) -> None:
            task = tasks[n]
            if task[1] is not None:
                task[1].__exit__(None, None, None)
                task[1] = None
            try:
                task[1] = next(task[0])
            except StopIteration:
                close_socket(task[2])
                del tasks[n]
                finished.add(n)

        while accepted < count or tasks:
            # Parked tasks re-check their condition each round without a pollable.
            for n in [n for n, t in tasks.items() if t[1] is None]:
                step(n)
            if not tasks and accepted == count:
                break
            waiting = [(n, t[1]) for n, t in tasks.items() if t[1] is not None]
            pollables = [pb for _, pb in waiting]
            listen_pollable = listener.subscribe() if accepted < count else None
            if listen_pollable is not None:
                pollables.append(listen_pollable)
            if not pollables:
                continue
            ready = poll.poll(pollables)
            if listen_pollable is not None:
                listen_pollable.__exit__(None, None, None)
                if len(pollables) - 1 in ready:
                    try:
                        sock, rx, tx = listener.accept()
                    except Err as e:
                        if e.value != network.ErrorCode.WOULD_BLOCK:
                            raise
                    else:
                        n = accepted
                        accepted += 1
                        say(f"conn={n} accepted")
                        tasks[n] = [serve(n, rx, tx, identity, gate, others_done), None, sock]
                        step(n)
            for index in ready:
                if index < len(waiting):
                    step(waiting[index][0])
        with identity, listener:
            pass
