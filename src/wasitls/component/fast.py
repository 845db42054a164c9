"""The `fast` engine: our own component runtime (binary.py, runtime.py, canonical.py) on wasmtime's core API."""

from __future__ import annotations

from typing import Any

import wasmtime

from . import binary as B
from .engine import (CompileCache, ComponentError, ComponentInstance, Engine, GuestTrap, LoadedComponent, Progress,
                     WasmFile)
from .host import HostLinker, split_name
from .runtime import CompiledModule, InstanceValue, Runtime, load_component
from .values import Trap


class FastEngine(Engine):
    name = "fast"

    def __init__(self) -> None:
        self.wt_engine = wasmtime.Engine()

    def load(self, wasm: bytes | WasmFile, *, cache: CompileCache, progress: Progress | None = None) -> "FastComponent":
        comp, modules = load_component(self.wt_engine, wasm if isinstance(wasm, WasmFile) else bytes(wasm),
                                       cache, progress)
        return FastComponent(self, comp, modules)


class FastComponent(LoadedComponent):
    def __init__(self, engine: FastEngine, comp: B.Component, modules: dict[int, CompiledModule]):
        self.engine = engine
        self.comp = comp
        self.modules = modules

    def imported_instances(self) -> list[str]:
        return [d.name for d in self.comp.imports if d.extern.sort == "instance"]

    def exported_interfaces(self) -> list[str]:
        return [d.name for d in self.comp.exports if d.sort == "instance"]

    def instantiate(self, linker: HostLinker) -> "FastInstance":
        runtime = Runtime(self.engine.wt_engine, self.modules, linker)
        try:
            root = runtime.instantiate(self.comp)
        except (Trap, GuestTrap) as e:
            if isinstance(e, GuestTrap):
                raise
            raise runtime.guest_trap(e) from None
        return FastInstance(runtime, root)


class FastInstance(ComponentInstance):
    def __init__(self, runtime: Runtime, root: InstanceValue):
        self.runtime = runtime
        self.root = root
        self._funcs: dict[tuple[str | None, str], Any] = {}

    def _find(self, interface: str | None, func: str) -> Any:
        key = (interface, func)
        f = self._funcs.get(key)
        if f is not None:
            return f
        exports = self.root.exports
        if interface is not None:
            entry = exports.get(interface)
            if entry is None:
                base = split_name(interface)[0]
                entry = next((e for n, e in exports.items() if split_name(n)[0] == base and e[0] == "instance"), None)
            if entry is None or entry[0] != "instance":
                raise ComponentError(f"component does not export {interface}")
            exports = entry[1].exports
        entry = exports.get(func)
        if entry is None or entry[0] != "func":
            raise ComponentError(f"component does not export {interface or ''}#{func}")
        f = self._funcs[key] = entry[1]
        return f

    def call(self, interface: str | None, func: str, *args: Any) -> Any:
        f = self._find(interface, func)
        runtime = self.runtime
        try:
            return f(*args)
        except Trap as e:
            raise runtime.guest_trap(e) from None

    def export_names(self) -> list[str]:
        return list(self.root.exports)

