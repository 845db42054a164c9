"""`wasitls serve [OPTIONS] COMPONENT`: a wasi:http/incoming-handler component as an HTTP(S) server.

The command: options, the component, TLS identities, signals, --workers; the server itself is
http/server.py (and http/server_h2.py). `add_parser` is all `wasitls run` imports of this module.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
from typing import Any


AUTO_WORKERS_MAX = 8  # each worker holds its own compiled component and instances (100-200 MB for Python)


def add_parser(sub: Any, add_guest_options: Any) -> None:
    p = sub.add_parser("serve", help="serve a wasi:http/incoming-handler component over HTTP or HTTPS",
                       usage="wasitls serve [OPTIONS] COMPONENT")
    p.add_argument("--addr", default="0.0.0.0:8080", metavar="HOST:PORT", help="where to listen (default 0.0.0.0:8080)")
    p.add_argument("--tls-identity", action="append", default=[], metavar="NAME",
                   help="serve HTTPS with this --identity; several are chosen among by the client's SNI "
                        "(default: every --identity given)")
    p.add_argument("--plain", action="store_true", help="serve plain HTTP even when identities are given")
    p.add_argument("--max-concurrent", type=int, default=16, metavar="N",
                   help="requests handled at once, by all workers together (16)")
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="time a client has to send a request's head once it started (10)")
    p.add_argument("--idle-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long an idle keep-alive connection stays open (30)")
    p.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM, how long requests in flight may take to finish (30)")
    p.add_argument("--access-log", default="-", metavar="FILE", help="one line per request ('-': stderr, the default)")
    p.add_argument("--reuse-instances", action="store_true",
                   help="let an instance handle the next request too (faster; only for guests that allow it)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes sharing the port (SO_REUSEPORT), each kept on one core (default: one per "
                        f"core this process may use, at most {AUTO_WORKERS_MAX}; 1 when the port is 0)")
    add_guest_options(p, serve=True)
    p.add_argument("component", metavar="COMPONENT")


def run_serve(ns: Any, make_host: Any, progress: Any) -> int:
    from .component.linker import split_name
    from .host import HostError

    _, sep, port = ns.addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise HostError(f"--addr {ns.addr!r}: expected HOST:PORT")
    if ns.max_concurrent < 1 or (ns.workers is not None and ns.workers < 1):
        raise HostError("--workers and --max-concurrent take a number of at least 1")
    if ns.workers is None:  # as wasmtime serve, every core; an ephemeral port cannot be shared
        ns.workers = 1 if int(port) == 0 else min(len(_cores()) or 1, AUTO_WORKERS_MAX, ns.max_concurrent)
    if ns.workers > ns.max_concurrent:
        raise HostError(f"--workers {ns.workers} with --max-concurrent {ns.max_concurrent}: each worker needs "
                        "at least one request")
    if ns.workers > 1 and not os.environ.get("WASITLS_SERVE_WORKER"):
        return _supervise(ns.workers, ns.max_concurrent)
    share = os.environ.get("WASITLS_SERVE_MAX_CONCURRENT", "")
    if share.isdigit() and int(share) >= 1:  # this worker's part of --max-concurrent
        ns.max_concurrent = int(share)
    cpu = os.environ.get("WASITLS_SERVE_CPU")
    if cpu and cpu.isdigit():
        try:
            os.sched_setaffinity(0, {int(cpu)})
        except OSError:
            pass  # the core went away: run where the system puts us
    from .component.errors import ComponentError
    from .http.server import Handlers, Server, ServeOptions, ServerTls
    from .tls_streams import GuestTls
    from .lifetime import Lifetime

    host = make_host(stdin=b"")
    loaded = host.load(ns.component)
    interface = next((n for n in loaded.exported_interfaces()
                      if split_name(n)[0] == "wasi:http/incoming-handler"), None)
    if interface is None:
        raise HostError("not an HTTP handler: the component exports no wasi:http/incoming-handler interface")
    identity_names = ns.tls_identity or ([] if ns.plain else [i.partition("=")[0] for i in ns.identity])
    tls = None
    if identity_names:
        settings = host._tls()
        for name in identity_names:
            if name not in settings.identities:
                raise HostError(f"--tls-identity {name}: no --identity named {name!r}")
        tls = ServerTls(GuestTls(settings, Lifetime()), identity_names, require_client_cert=bool(ns.client_ca_file))
    elif ns.client_ca_file:
        raise HostError("--client-ca-file needs TLS: give an --identity for the server")
    options = ServeOptions(addr=ns.addr, max_concurrent=ns.max_concurrent, header_timeout=ns.header_timeout,
                           idle_timeout=ns.idle_timeout, grace=ns.grace)
    def new_instance() -> tuple[Any, Lifetime]:
        ctx = host._ctx(["wasitls-serve"])
        try:
            return loaded.instantiate(host.linker(ctx)), ctx.lifetime
        except ComponentError as e:  # unserved imports, a link failure
            raise HostError(str(e)) from None

    handlers = Handlers(new_instance, interface, options.max_concurrent, reuse=ns.reuse_instances)
    handlers.warm()
    gc.freeze()  # the loaded component and host code live as long as the server: keep them out of GC passes
    server = Server(options, handlers, tls, _access_log(ns.access_log))
    try:
        listener = server.bind(reuse_port=bool(os.environ.get("WASITLS_SERVE_WORKER")))
    except OSError as e:
        raise HostError(f"cannot listen on {ns.addr}: {e.strerror}") from None
    address = listener.getsockname()
    scheme = "https" if tls else "http"
    progress(f"serving {scheme}://{address[0]}:{address[1]}/ (pid {os.getpid()})")
    ready = os.environ.pop("WASITLS_SERVE_READY_FD", "")
    if ready.isdigit():  # the supervisor starts the other workers once this one serves
        try:
            os.write(int(ready), b"1")
            os.close(int(ready))
        except OSError:
            pass

    def on_signal(signum: int, frame: Any) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.serve_forever()
    return 0


def _access_log(target: str | None) -> Any:
    if target in (None, "", "off"):
        return None
    if target == "-":
        return lambda line: print(line, file=sys.stderr, flush=True)
    f = open(target, "a", buffering=1)
    lock = threading.Lock()

    def write(line: str) -> None:
        with lock:
            f.write(line + "\n")
    return write


def _cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _supervise(workers: int, max_concurrent: int) -> int:
    """--workers N: N copies of this command, each binding the port with SO_REUSEPORT and each kept on
    one core of those this process may use (round robin): a worker's threads share one interpreter
    lock, and letting them wander between cores costs more (cache, TLB shootdowns) than it gains.
    The first starts alone: a component or option that cannot serve is reported once, not N times.
    --max-concurrent bounds the requests of all workers together: each gets its share."""
    cores = _cores()
    children: list[subprocess.Popen] = []

    def start(i: int, ready: int | None = None) -> subprocess.Popen:
        share = max_concurrent // workers + (1 if i < max_concurrent % workers else 0)
        env = dict(os.environ, WASITLS_SERVE_WORKER="1", WASITLS_SERVE_MAX_CONCURRENT=str(share))
        if len(cores) > 1:
            env["WASITLS_SERVE_CPU"] = str(cores[i % len(cores)])
        if ready is not None:
            env["WASITLS_SERVE_READY_FD"] = str(ready)
        return subprocess.Popen([sys.executable, "-m", "wasitls", *sys.argv[1:]], env=env,
                                pass_fds=() if ready is None else (ready,))

    def forward(signum: int, frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    r, w = os.pipe()
    children.append(start(0, w))
    os.close(w)
    try:
        ready = os.read(r, 1)  # b"": the first worker ended without serving
    finally:
        os.close(r)
    if ready:
        children.extend(start(i) for i in range(1, workers))
    status = 0
    for child in children:
        status = max(status, child.wait())
    return status
