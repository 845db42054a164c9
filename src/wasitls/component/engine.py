"""What every engine offers the host: load a component, link it to host interfaces, call exports.

Two engines implement it: `reference` (wasmtime-py's component API) and `fast` (our own canonical
ABI over wasmtime's core API). The WASI and TLS code is the same for both.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

from .host import HostLinker


class ComponentError(Exception):
    """The file is not a component we can run (malformed, unsupported feature, ...): one clear line."""


class UnservedImports(ComponentError):
    def __init__(self, names: list[str]):
        self.names = sorted(names)
        super().__init__("component imports interfaces this host does not serve: " + ", ".join(self.names))


class GuestTrap(Exception):
    """The guest trapped; the message names the trap in one line."""

    @property
    def status(self) -> int:
        """The exit status `wasmtime run` gives it: 128 + SIGABRT (134) for a trap in wasm code (its message
        starts "wasm trap:"), 1 for an error raised by a host call (a canonical ABI violation, a broken WASI
        precondition such as writing past check-write), which wasmtime reports as a plain error."""
        return 134 if str(self).startswith("wasm trap") else 1


class CompileCache:
    """Compiled code on disk, keyed by content hash and engine version; None dir means disabled."""

    def __init__(self, directory: Path | None):
        self.directory = directory

    @classmethod
    def default(cls) -> "CompileCache":
        if os.environ.get("WASITLS_NO_CACHE"):
            return cls(None)
        root = os.environ.get("WASITLS_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wasitls", "compiled"
        )
        return cls(Path(root))

    def path_for(self, wasm: bytes, kind: str, version: str) -> Path | None:
        if self.directory is None:
            return None
        digest = hashlib.sha256(wasm).hexdigest()
        return self.directory / f"{kind}-{version}-{digest}.bin"

    def load(self, path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    def store(self, path: Path | None, data: bytes) -> None:
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache we cannot write only costs a recompile next time


Progress = Callable[[str], None]


class Engine:
    name = "abstract"

    def load(self, wasm: bytes, *, cache: CompileCache, progress: Progress | None = None) -> "LoadedComponent":
        raise NotImplementedError


class LoadedComponent:
    def imported_instances(self) -> list[str]:
        """Names of the instances the component imports, e.g. 'wasi:io/streams@0.2.9'."""
        raise NotImplementedError

    def instantiate(self, linker: HostLinker) -> "ComponentInstance":
        """Links every import to a host interface; raises UnservedImports listing all that are missing."""
        raise NotImplementedError


class ComponentInstance:
    def call(self, interface: str | None, func: str, *args: Any) -> Any:
        """Calls an exported function (`interface` None for a top-level export); plain values in and out.

        A trap raises GuestTrap; wasi:cli/exit's GuestExit propagates unchanged.
        """
        raise NotImplementedError
