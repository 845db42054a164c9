"""The `wasitls` command line: `run` a component, or run the offline TLS `demo`."""

from __future__ import annotations

import argparse
import os
import sys

from .component.engine import GuestTrap
from .host import DEFAULT_ENGINE, Host, HostError

TRAP_STATUS = 134  # what wasmtime's CLI exits with after a trap (SIGABRT's 128 + 6)


def _progress(line: str) -> None:
    print(f"wasitls: {line}", file=sys.stderr, flush=True)


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a WASI 0.2 command component",
                       usage="wasitls run [OPTIONS] COMPONENT [ARGS...]")
    p.add_argument("--dir", action="append", default=[], metavar="HOST_DIR[::GUEST_DIR]",
                   help="preopen a directory (GUEST_DIR defaults to HOST_DIR); repeatable")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="set a guest environment variable; repeatable")
    p.add_argument("--allow-net", action="append", default=[], metavar="HOST[:PORT]",
                   help="allow TCP/UDP connections to HOST (any port if PORT is left out) and name lookups "
                        "of HOST; repeatable; '*' allows every address")
    p.add_argument("--allow-listen", action="append", default=[], metavar="[HOST:]PORT",
                   help="allow bind/listen on that address; repeatable")
    p.add_argument("--ca-file", metavar="PEM", help="trust exactly the roots in this PEM file for TLS")
    p.add_argument("--client-ca-file", metavar="PEM",
                   help="trust these roots for client certificates a guest server receives")
    p.add_argument("--identity", action="append", default=[], metavar="NAME=KEY.pem,CERT.pem[,PASSFILE]",
                   help="a private identity the host holds for the guest (wasitls:tls/identities; the key never "
                        "enters the guest); PASSFILE holds the passphrase of an encrypted key; repeatable")
    p.add_argument("--tls-trace", action="store_true", help="print one line per TLS connection to stderr")
    p.add_argument("--tls-keylog", metavar="FILE", help="append NSS key-log lines for every TLS connection")
    p.add_argument("--engine", choices=["fast", "reference"], default=os.environ.get("WASITLS_ENGINE", DEFAULT_ENGINE),
                   help="component engine: our own runtime (fast) or wasmtime-py's component API (reference)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the compiled-code cache "
                                                           "(also: WASITLS_NO_CACHE=1)")
    p.add_argument("component", metavar="COMPONENT")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wasitls", description="Run WebAssembly components with host TLS.")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    demo = sub.add_parser("demo", help="offline demo: a guest fetches a page over host TLS from a local server")
    demo.add_argument("--engine", choices=["fast", "reference"], default=os.environ.get("WASITLS_ENGINE", DEFAULT_ENGINE))
    ns = parser.parse_args(argv)
    try:
        if ns.command == "demo":
            from .demo import run_demo
            return run_demo(engine=ns.engine, progress=_progress)
        host = Host(
            dirs=ns.dir, env=ns.env, allow_net=ns.allow_net, allow_listen=ns.allow_listen,
            ca_file=ns.ca_file, client_ca_file=ns.client_ca_file, identities=ns.identity,
            tls_trace=ns.tls_trace, tls_keylog=ns.tls_keylog, engine=ns.engine,
            cache=not ns.no_cache, progress=_progress,
        )
        return host.run(ns.component, ns.args)
    except HostError as e:
        print(f"wasitls: error: {e}", file=sys.stderr)
        return 2
    except GuestTrap as e:
        print(f"wasitls: guest trapped: {e}", file=sys.stderr)
        return TRAP_STATUS
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug of ours: still one line, the traceback only on request
        if os.environ.get("WASITLS_DEBUG"):
            raise
        print(f"wasitls: internal error: {type(e).__name__}: {e} (set WASITLS_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
