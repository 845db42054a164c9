"""Build-time and run-time fixes `wasitls build` applies around an app, for what a componentize-py
snapshot cannot do: open a socket while building, or read a package's data file at run time
(a component has no file system of its own: only the modules imported while building are in it).
"""

import os
import socket
import sys


class no_sockets_while_building:
    """urllib3 (and others) probe IPv6 by binding a socket at import; a socket opened while the
    snapshot is made is a dead handle at run time (a trap, on wasmtime as here). With
    socket.has_ipv6 False during the import, urllib3 skips the probe and says "no IPv6"."""

    def __enter__(self):
        self.saved = socket.has_ipv6
        socket.has_ipv6 = False

    def __exit__(self, *exc):
        socket.has_ipv6 = self.saved


def apply():
    """Run-time fixes for libraries the app imported (nothing is imported here that it did not)."""
    adapters = sys.modules.get("requests.adapters")
    if adapters is not None:
        _requests_default_trust(adapters)


def _requests_default_trust(adapters):
    """requests' verify=True names certifi's bundle file, which is not in the component: verify
    against the default trust instead, the host's (the host checks every certificate anyway).
    A client certificate named "host-identity:NAME" is the host's, not a file to look for."""
    adapter = adapters.HTTPAdapter
    original = adapter.cert_verify

    def cert_verify(self, conn, url, verify, cert):
        default_trust = verify is True and not os.path.exists(adapters.DEFAULT_CA_BUNDLE_PATH)
        host_identity = isinstance(cert, str) and cert.startswith("host-identity:")
        original(self, conn, url, False if default_trust else verify, None if host_identity else cert)
        if default_trust and url.lower().startswith("https"):
            conn.cert_reqs = "CERT_REQUIRED"
            conn.ca_certs = None
            conn.ca_cert_dir = None
        if host_identity:
            conn.cert_file, conn.key_file = cert, None

    adapter.cert_verify = cert_verify
