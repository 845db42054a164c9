"""wasi:clocks/wall-clock@0.2.9."""

from __future__ import annotations

import time
from typing import Any

from ...component.linker import HostInterface


def datetime(ns: int) -> dict[str, int]:
    return {"seconds": ns // 1_000_000_000, "nanoseconds": ns % 1_000_000_000}


class WallClock(HostInterface):
    wit = "wasi:clocks/wall-clock@0.2.9"

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def now(self) -> dict[str, int]:
        return datetime(time.time_ns())

    def resolution(self) -> dict[str, int]:
        return datetime(max(1, int(time.get_clock_info("time").resolution * 1e9)))
