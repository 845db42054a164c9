"""wasi:cli/environment@0.2.9."""

from __future__ import annotations

from ...component.linker import HostInterface
from ..ctx import WasiCtx


class Environment(HostInterface):
    wit = "wasi:cli/environment@0.2.9"

    def __init__(self, ctx: WasiCtx):
        self.ctx = ctx

    def get_environment(self) -> list[tuple[str, str]]:
        return list(self.ctx.env)

    def get_arguments(self) -> list[str]:
        return list(self.ctx.args)

    def initial_cwd(self) -> str | None:
        return self.ctx.cwd
