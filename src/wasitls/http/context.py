"""One guest's HTTP: what every wasi:http interface of a guest shares."""

from __future__ import annotations

from typing import Any, Callable

from ..lifetime import Lifetime
from .client import HttpClient


class GuestHttp:
    """The guest's policy, its TLS (made on the first HTTPS request), the client identities chosen by
    destination (--http-client-identity), and its connection pool, closed when the guest ends."""

    def __init__(self, policy: Any, lifetime: Lifetime, guest_tls: Callable[[], Any],
                 client_identities: dict[str, str] | None = None):
        self.policy = policy
        self.lifetime = lifetime
        self.guest_tls = guest_tls
        self.client_identities = client_identities or {}
        self._client: HttpClient | None = None

    @property
    def client(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(self.policy, self.guest_tls, client_identities=self.client_identities)
            self.lifetime.at_end(self._client.close)
        return self._client
