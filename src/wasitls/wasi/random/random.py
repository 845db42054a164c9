"""wasi:random/random@0.2.9: the host's CSPRNG."""

from __future__ import annotations

import os
from typing import Any

from ...component.host import HostInterface


class Random(HostInterface):
    wit = "wasi:random/random@0.2.9"

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def get_random_bytes(self, len: int) -> bytes:
        return os.urandom(len)

    def get_random_u64(self) -> int:
        return int.from_bytes(os.urandom(8), "little")
