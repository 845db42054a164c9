"""`wasitls serve`'s command line (kept apart from serve.py so `wasitls run` does not import the server)."""

from __future__ import annotations

from typing import Any


def add_parser(sub: Any, add_guest_options: Any) -> None:
    p = sub.add_parser("serve", help="serve a wasi:http/incoming-handler component over HTTP or HTTPS",
                       usage="wasitls serve [OPTIONS] COMPONENT")
    p.add_argument("--addr", default="0.0.0.0:8080", metavar="HOST:PORT", help="where to listen (default 0.0.0.0:8080)")
    p.add_argument("--tls-identity", action="append", default=[], metavar="NAME",
                   help="serve HTTPS with this --identity; several are chosen among by the client's SNI "
                        "(default: every --identity given)")
    p.add_argument("--plain", action="store_true", help="serve plain HTTP even when identities are given")
    p.add_argument("--max-concurrent", type=int, default=16, metavar="N", help="requests handled at once (16)")
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="time a client has to send a request's head once it started (10)")
    p.add_argument("--idle-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long an idle keep-alive connection stays open (30)")
    p.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM, how long requests in flight may take to finish (30)")
    p.add_argument("--access-log", default="-", metavar="FILE", help="one line per request ('-': stderr, the default)")
    p.add_argument("--reuse-instances", action="store_true",
                   help="let an instance handle the next request too (faster; only for guests that allow it)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="processes sharing the port (SO_REUSEPORT)")
    add_guest_options(p, serve=True)
    p.add_argument("component", metavar="COMPONENT")
