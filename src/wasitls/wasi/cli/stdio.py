"""wasi:cli/stdin, stdout and stderr@0.2.9: one stream object per call over the guest's stdio backends."""

from __future__ import annotations

from ...component.linker import HostInterface
from ..ctx import WasiCtx
from ..io.streams import InputStream, OutputStream


class Stdin(HostInterface):
    wit = "wasi:cli/stdin@0.2.9"

    def __init__(self, ctx: WasiCtx):
        self.ctx = ctx

    def get_stdin(self) -> InputStream:
        return InputStream(self.ctx.stdin)


class Stdout(HostInterface):
    wit = "wasi:cli/stdout@0.2.9"

    def __init__(self, ctx: WasiCtx):
        self.ctx = ctx

    def get_stdout(self) -> OutputStream:
        return OutputStream(self.ctx.stdout)


class Stderr(HostInterface):
    wit = "wasi:cli/stderr@0.2.9"

    def __init__(self, ctx: WasiCtx):
        self.ctx = ctx

    def get_stderr(self) -> OutputStream:
        return OutputStream(self.ctx.stderr)
