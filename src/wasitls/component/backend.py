"""What every component backend offers the host: load a component, link it to host interfaces, call exports.

Two backends implement it, chosen with `--engine`: `fast` (our own canonical ABI over wasmtime's core
API: fast.py, runtime.py, canonical.py) and `reference` (wasmtime-py's component API: reference.py).
The WASI and TLS code is the same for both.
"""

from __future__ import annotations

from typing import Any, Callable

from .compile_cache import CompileCache, WasmFile
from .linker import HostLinker

Progress = Callable[[str], None]


class Backend:
    name = "abstract"

    def load(self, wasm: bytes | WasmFile, *, cache: CompileCache,
             progress: Progress | None = None) -> "LoadedComponent":
        """`wasm` is the component's bytes, or a WasmFile a backend reads only when its cache misses."""
        raise NotImplementedError


class LoadedComponent:
    def imported_instances(self) -> list[str]:
        """Names of the instances the component imports, e.g. 'wasi:io/streams@0.2.9'."""
        raise NotImplementedError

    def exported_interfaces(self) -> list[str]:
        """Names of the instances the component exports, e.g. 'wasi:cli/run@0.2.3', in its order."""
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

    def close(self) -> None:
        """The instance will not be called again: what it holds may go now, not at the next garbage
        collection (a server making an instance per request would otherwise pile them up)."""
