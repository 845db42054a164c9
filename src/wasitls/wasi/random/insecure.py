"""wasi:random/insecure@0.2.9: fast, not for secrets."""

from __future__ import annotations

import random
from typing import Any

from ...component.linker import HostInterface
from .random import RandomBytes


class Insecure(HostInterface):
    wit = "wasi:random/insecure@0.2.9"

    def __init__(self, ctx: Any = None):
        self.ctx = ctx
        self.rng = random.Random()

    def get_insecure_random_bytes(self, len: int) -> RandomBytes:
        return RandomBytes(len, self.rng.randbytes)

    def get_insecure_random_u64(self) -> int:
        return self.rng.getrandbits(64)
