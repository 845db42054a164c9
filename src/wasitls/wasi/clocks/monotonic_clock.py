"""wasi:clocks/monotonic-clock@0.2.9: nanoseconds on the host's monotonic clock."""

from __future__ import annotations

import time
from typing import Any

from ...component.linker import HostInterface
from ..io.poll import Deadline, Pollable


class MonotonicClock(HostInterface):
    wit = "wasi:clocks/monotonic-clock@0.2.9"

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def now(self) -> int:
        return time.monotonic_ns()

    def resolution(self) -> int:
        return max(1, int(time.get_clock_info("monotonic").resolution * 1e9))

    def subscribe_instant(self, when: int) -> Pollable:
        return Pollable(Deadline(when))

    def subscribe_duration(self, when: int) -> Pollable:
        return Pollable(Deadline(time.monotonic_ns() + when))
