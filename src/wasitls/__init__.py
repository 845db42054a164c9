"""wasitls: a WebAssembly component host in Python whose guests get TLS done by the host (OpenSSL).

Which package may import which (tests/test_layering.py checks every import against IMPORT_RULE):

    component/       the component runtime: imports nothing of wasitls but itself and inputfiles
                     (knows nothing of WASI or TLS)
    records, policy, lifetime, libc, sandbox
                     small shared modules: import only each other (sandbox: the path resolution
                     beneath a preopen that every filesystem front end uses; libc: its ctypes calls)
    wasi/            WASI interfaces: component and the shared modules (nothing of TLS)
    tls/             the TLS core (engine, OpenSSL binding, trust, identities, settings): only itself
                     and inputfiles
    inputfiles       how every file named on the command line is opened (regular files, bounded
                     sizes): imports nothing; shared by component/, tls/ and the front
    tls_streams.py   the glue between the TLS core and byte streams: tls/, wasi.io, shared modules
    tls_interfaces/  the TLS interfaces we serve: everything above
    preview1/        WASI preview 1 for core modules (and its sockets, hTLS): the same as tls_interfaces
    http/            wasi:http (the interfaces, the client, the server): everything above; it sits over
                     TLS and sockets, which know nothing of it
    host, served, cli, serve, demo, guestbuild, devtools
                     the front: anything (devtools: helpers the tests and benches share)
"""

# package (first name under wasitls) -> what it may import; "wasi.io" allows only that subpackage
IMPORT_RULE = {
    "component": ["inputfiles"],
    "inputfiles": [],
    "records": [],
    "policy": ["records", "lifetime"],
    "lifetime": ["records"],
    "libc": [],
    "sandbox": ["libc"],
    "wasi": ["component", "records", "policy", "lifetime", "libc", "sandbox"],
    "tls": ["inputfiles"],
    "tls_streams": ["tls", "wasi.io", "records", "lifetime"],
    "tls_interfaces": ["component", "wasi", "tls", "tls_streams", "records", "policy", "lifetime"],
    "http": ["component", "wasi", "tls_streams", "records", "policy", "lifetime"],
    "preview1": ["component", "wasi", "tls", "tls_streams", "records", "policy", "lifetime"],
    "served": ["component"],
    "host": ["*"], "cli": ["*"], "serve": ["*"], "demo": ["*"], "guestbuild": ["*"], "devtools": ["*"], "__main__": ["*"], "__init__": ["*"],
}

from .host import Host, HostError  # noqa: E402

__all__ = ["Host", "HostError"]
