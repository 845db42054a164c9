"""wasi:io/error@0.2.9: the `error` resource behind `stream-error.last-operation-failed`."""

from __future__ import annotations

from typing import Any

from ...component.linker import HostInterface


class IoError:
    """An error a person can read; `fs_code`/`net_code` let filesystem and sockets recover their error-code."""

    def __init__(self, message: str, *, fs_code: str | None = None, net_code: str | None = None):
        self.message = message
        self.fs_code = fs_code
        self.net_code = net_code

    def to_debug_string(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"IoError({self.message!r})"


class Error(HostInterface):
    wit = "wasi:io/error@0.2.9"
    resources = {"error": IoError}

    def __init__(self, ctx: Any = None):
        self.ctx = ctx
