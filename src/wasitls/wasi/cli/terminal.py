"""wasi:cli/terminal-input, terminal-output, terminal-stdin, terminal-stdout, terminal-stderr@0.2.9."""

from __future__ import annotations

from ...component.linker import HostInterface
from ..ctx import WasiCtx


class TerminalInput:
    """The `terminal-input` resource: only says stdin is a terminal."""


class TerminalOutput:
    """The `terminal-output` resource."""


class TerminalInputInterface(HostInterface):
    wit = "wasi:cli/terminal-input@0.2.9"
    resources = {"terminal-input": TerminalInput}

    def __init__(self, ctx: WasiCtx):
        self.ctx = ctx


class TerminalOutputInterface(HostInterface):
    wit = "wasi:cli/terminal-output@0.2.9"
    resources = {"terminal-output": TerminalOutput}

    def __init__(self, ctx: WasiCtx):
        self.ctx = ctx


class TerminalStdin(HostInterface):
    wit = "wasi:cli/terminal-stdin@0.2.9"

    def __init__(self, ctx: WasiCtx):
        self.ctx = ctx

    def get_terminal_stdin(self) -> TerminalInput | None:
        return TerminalInput() if self.ctx.stdin_tty else None


class TerminalStdout(HostInterface):
    wit = "wasi:cli/terminal-stdout@0.2.9"

    def __init__(self, ctx: WasiCtx):
        self.ctx = ctx

    def get_terminal_stdout(self) -> TerminalOutput | None:
        return TerminalOutput() if self.ctx.stdout_tty else None


class TerminalStderr(HostInterface):
    wit = "wasi:cli/terminal-stderr@0.2.9"

    def __init__(self, ctx: WasiCtx):
        self.ctx = ctx

    def get_terminal_stderr(self) -> TerminalOutput | None:
        return TerminalOutput() if self.ctx.stderr_tty else None
