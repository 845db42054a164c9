"""The `wasitls` command line: `run` a component, or run the offline TLS `demo`."""

from __future__ import annotations

import argparse
import os
import sys

from .component.errors import GuestTrap
from .host import DEFAULT_ENGINE, Host, HostError


def _progress(line: str) -> None:
    print(f"wasitls: {line}", file=sys.stderr, flush=True)


def _exit_now(status: int) -> None:
    """Ends the process once the guest is done: what is left (the wasmtime store, compiled code,
    every Python object) is the OS's to reclaim, and Python's own teardown of it costs ~20 ms.
    The guest's output is already written (stdio sinks write straight to their descriptors)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or broken stream must not change the status
            pass
    os._exit(status)


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a WASI 0.2 command component or a WASI preview 1 command module",
                       usage="wasitls run [OPTIONS] COMPONENT [ARGS...]")
    _add_guest_options(p)
    p.add_argument("component", metavar="COMPONENT")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")


def _add_guest_options(p: argparse.ArgumentParser, serve: bool = False) -> None:
    """What a guest may reach and the host's TLS: the same for `run` and `serve`."""
    p.add_argument("--dir", action="append", default=[], metavar="HOST_DIR[::GUEST_DIR]",
                   help="preopen a directory (GUEST_DIR defaults to HOST_DIR; HOST_DIR:: names it '' as wasmtime does); "
                        "an empty HOST_DIR is refused; repeatable")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="set a guest environment variable (NAME alone: the host's value); repeatable")
    p.add_argument("--allow-net", action="append", default=[], metavar="HOST[:PORT]",
                   help="allow TCP/UDP connections to HOST (any port if PORT, 1-65535, is left out) and name lookups "
                        "of HOST; HOST is a name, an IPv4 address, [IPv6] (bare IPv6 without a port) or '*' for "
                        "every address; repeatable")
    p.add_argument("--allow-listen", action="append", default=[], metavar="[HOST:]PORT",
                   help="allow bind/listen on that local address (any local address without HOST or with '*'); PORT "
                        "0-65535, 0 for a port the OS picks; repeatable")
    # every file option (and COMPONENT) must name a regular file of bounded size: see wasitls.inputfiles
    p.add_argument("--ca-file", metavar="PEM", help="trust exactly the roots in this PEM file for TLS")
    p.add_argument("--client-ca-file", metavar="PEM",
                   help="trust these roots for client certificates a guest server receives")
    p.add_argument("--identity", action="append", default=[], metavar="NAME=KEY.pem,CERT.pem[,PASSFILE]",
                   help="a private identity the host holds for the guest (wasitls:tls/identities; the key never "
                        "enters the guest); PASSFILE holds the passphrase of an encrypted key; "
                        "NAME=pkcs11:URI,CERT.pem: the key stays in a PKCS#11 token (RFC 7512 URI); repeatable")
    p.add_argument("--pkcs11-module", metavar="PATH", default=os.environ.get("WASITLS_PKCS11_MODULE"),
                   help="the PKCS#11 module for pkcs11: identities, e.g. /usr/lib/softhsm/libsofthsm2.so "
                        "(also: WASITLS_PKCS11_MODULE)")
    p.add_argument("--pkcs11-pin-file", metavar="FILE",
                   help="a file holding the token's PIN for pkcs11: identities (a URI's pin-source=file:... wins)")
    p.add_argument("--http-client-identity", action="append", default=[], metavar="HOST=NAME",
                   help="wasi:http requests to HOST over HTTPS present the --identity NAME as their client "
                        "certificate ('*' for every host); repeatable")
    p.add_argument("--tls-trace", action="store_true", help="print one line per TLS connection to stderr")
    p.add_argument("--tls-keylog", metavar="FILE", help="append NSS key-log lines for every TLS connection (a regular "
                                                        "file, a character device, or a FIFO a reader holds open)")
    p.add_argument("--tls-guest-insecure", action="store_true",
                   help="let a guest's ssl module turn off certificate and host name checks (CERT_NONE, "
                        "check_hostname=False); refused by default")
    p.add_argument("--tls-guest-roots", choices=["narrow", "own"], default="narrow",
                   help="CA certificates a guest's ssl module loads: 'narrow' (default) can only narrow the "
                        "host's trust; 'own' replace it for that guest's connections, as in CPython")
    p.add_argument("--engine", choices=["fast", "reference"], default=os.environ.get("WASITLS_ENGINE", DEFAULT_ENGINE),
                   help="component engine: our own runtime (fast) or wasmtime-py's component API (reference; it "
                        "cannot make host calls that borrow two resources, e.g. wasi:sockets tcp start-connect, "
                        "wasi:io/poll with several pollables, filesystem rename-at: such a call ends the guest "
                        "with a line saying so)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the compiled-code cache "
                                                           "(also: WASITLS_NO_CACHE=1)")


def _build_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build a Python guest (componentize-py) whose ssl module is done by the host",
                       usage="wasitls build [-p DIR]... [-o OUT.wasm] APP")
    p.add_argument("app", metavar="APP", help="the app: a .py file, or a module name found on the -p paths")
    p.add_argument("-p", "--python-path", action="append", default=[], metavar="DIR",
                   help="a directory of Python modules and packages to include (e.g. from pip install --target DIR); "
                        "repeatable, searched in order")
    p.add_argument("-o", "--output", metavar="OUT.wasm", help="where to write the component (default: APP.wasm)")


def _build(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from .guestbuild import GuestBuildError, build_app

    output = ns.output or f"{Path(ns.app).stem if ns.app.endswith('.py') else ns.app.split('.')[-1]}.wasm"
    try:
        out = build_app(ns.app, output, ns.python_path, progress=_progress)
    except GuestBuildError as e:
        print(f"wasitls: error: {e}", file=sys.stderr)
        return 1
    print(f"wasitls: wrote {out}", file=sys.stderr)
    return 0


def _fill_closed_std_fds() -> None:
    """Park /dev/null on a standard descriptor that is closed (`wasitls run ... <&-`).

    Otherwise the next file we open (the compiled-code cache) takes its number and the guest's stdin would
    read it, or its stdout write into it. With /dev/null there, stdin is at end of file and output is
    discarded, as on wasmtime.
    """
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, mode)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def main(argv: list[str] | None = None) -> int:
    _fill_closed_std_fds()
    parser = argparse.ArgumentParser(prog="wasitls", description="Run WebAssembly components with host TLS.")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _build_parser(sub)
    demo = sub.add_parser("demo", help="offline demo: a guest fetches a page over host TLS from a local server")
    demo.add_argument("--engine", choices=["fast", "reference"], default=os.environ.get("WASITLS_ENGINE", DEFAULT_ENGINE))
    from .serve import add_parser as _serve_parser
    _serve_parser(sub, _add_guest_options)
    ns = parser.parse_args(argv)

    def make_host(**extra: object) -> Host:
        return Host(
            dirs=ns.dir, env=ns.env, allow_net=ns.allow_net, allow_listen=ns.allow_listen,
            ca_file=ns.ca_file, client_ca_file=ns.client_ca_file, identities=ns.identity,
            pkcs11_module=ns.pkcs11_module, pkcs11_pin_file=ns.pkcs11_pin_file,
            tls_trace=ns.tls_trace, tls_keylog=ns.tls_keylog, engine=ns.engine,
            tls_guest_insecure=ns.tls_guest_insecure, tls_guest_roots=ns.tls_guest_roots,
            cache=not ns.no_cache, progress=_progress, http_client_identities=ns.http_client_identity, **extra,
        )

    try:
        if ns.command == "build":
            return _build(ns)
        if ns.command == "demo":
            from .demo import run_demo
            return run_demo(engine=ns.engine, progress=_progress)
        if ns.command == "serve":
            from .serve import run_serve
            return run_serve(ns, make_host, _progress)
        host = make_host()
        status = host.run(ns.component, ns.args)
        if argv is None:  # run as the program: leave without tearing the interpreter down
            _exit_now(status)
        return status
    except HostError as e:
        print(f"wasitls: error: {e}", file=sys.stderr)
        return 2
    except GuestTrap as e:
        print(f"wasitls: guest trapped: {e}", file=sys.stderr)
        return e.status  # as wasmtime: 134 for a trap in wasm code, 1 for an error a host call raised
    except KeyboardInterrupt:  # Ctrl-C: while compiling (the compile runs on a worker thread) or in the guest
        print("wasitls: interrupted", file=sys.stderr)
        if argv is None:  # a compile thread may still be inside wasmtime: leave without waiting for it
            _exit_now(130)
        return 130
    except Exception as e:  # a bug of ours: still one line, the traceback only on request
        if os.environ.get("WASITLS_DEBUG"):
            raise
        print(f"wasitls: internal error: {type(e).__name__}: {e} (set WASITLS_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
