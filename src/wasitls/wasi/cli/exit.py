"""wasi:cli/exit@0.2.9: ends the guest by unwinding to the host with its status."""

from __future__ import annotations

from typing import Any

from ...component.linker import HostInterface
from ...component.values import Err, GuestExit


class Exit(HostInterface):
    wit = "wasi:cli/exit@0.2.9"

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def exit(self, status: Any) -> None:
        raise GuestExit(1 if isinstance(status, Err) else 0)

    def exit_with_code(self, status_code: int) -> None:
        raise GuestExit(status_code)
