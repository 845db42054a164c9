"""wasitls:tls/identities@0.1.0: private identities the host holds (`--identity NAME=KEY,CERT`).

The guest gets a handle by name; the key stays in OpenSSL on the host and never enters guest memory.
"""

from __future__ import annotations

from ..component.linker import HostInterface
from ..tls_streams import GuestTls
from .wasitls_tls import PrivateIdentity


class Identities(HostInterface):
    wit = "wasitls:tls/identities@0.1.0"

    def __init__(self, tls: GuestTls):
        self.tls = tls

    def get(self, name: str) -> PrivateIdentity | None:
        inner = self.tls.settings.identities.get(name)
        return None if inner is None else PrivateIdentity(inner)
