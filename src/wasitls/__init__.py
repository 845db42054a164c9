"""wasitls: a WebAssembly component host in Python whose guests get TLS done by the host (OpenSSL)."""

from .host import Host, HostError

__all__ = ["Host", "HostError"]
