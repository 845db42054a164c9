"""wasi:random/insecure-seed@0.2.9: one seed per guest, for hash-map keys and the like."""

from __future__ import annotations

import os
from typing import Any

from ...component.linker import HostInterface


class InsecureSeed(HostInterface):
    wit = "wasi:random/insecure-seed@0.2.9"

    def __init__(self, ctx: Any = None):
        self.ctx = ctx
        raw = os.urandom(16)
        self.seed = (int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little"))

    def insecure_seed(self) -> tuple[int, int]:
        return self.seed
