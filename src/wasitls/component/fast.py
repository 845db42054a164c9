"""The `fast` backend: our own component runtime (binary.py, runtime.py, canonical.py) on wasmtime's core API."""

from __future__ import annotations

from typing import Any

import wasmtime

from . import binary as B
from . import compile_cache as cc
from .backend import Backend, ComponentInstance, LoadedComponent, Progress
from .compile_cache import CompileCache, WasmFile
from .errors import ComponentError, GuestTrap
from .linker import HostLinker, split_name
from .plan import NotPlannable, Plan
from .runtime import CompiledModule, InstanceValue, Runtime, SharedTypes
from .values import Trap
from .wasmtime_capi import WASMTIME_VERSION, trap_line

LARGE_MODULE = 1 << 20  # modules above this size print a progress line while they compile


class FastBackend(Backend):
    name = "fast"

    def __init__(self) -> None:
        self.wasmtime_engine = wasmtime.Engine()

    def load(self, wasm: bytes | WasmFile, *, cache: CompileCache, progress: Progress | None = None) -> "FastComponent":
        comp, modules = load_component(self.wasmtime_engine, wasm if isinstance(wasm, WasmFile) else bytes(wasm),
                                       cache, progress)
        return FastComponent(self, comp, modules)


def core_modules(comp: B.Component) -> list[B.CoreModule]:
    """The core modules of a component and of the components nested in it, in binary order."""
    found = []
    for d in comp.definitions:
        if isinstance(d, B.CoreModule):
            found.append(d)
        elif isinstance(d, B.Component):
            found.extend(core_modules(d))
    return found


def load_component(wasmtime_engine: wasmtime.Engine, wasm: bytes | WasmFile, cache: CompileCache,
                   progress: Progress | None) -> tuple[B.Component, dict[int, CompiledModule]]:
    """Parses the component and compiles its core modules (nested ones too), through the cache.

    A second load of the same component reads an index (the parsed definitions, each module's cache
    entry and imports) instead of parsing and hashing every module again: start-up time counts.
    """
    version = f"wt{WASMTIME_VERSION}"
    index_path = cc.index_path(cache, wasm, version)
    indexed = cc.read_index(cache, index_path)
    if indexed is not None and index_path is not None:
        comp, listed = indexed
        modules = {}
        for m in listed:
            module = cache.load_module(wasmtime_engine, index_path.with_name(m.name), (m.digest, m.ident))
            if module is None:
                break
            modules[m.offset] = CompiledModule(module, m.imports)
        else:
            if cache.resigned:  # an entry was copied or touched since: record its new identity
                cc.write_index(cache, index_path, comp,
                               [(m.offset, index_path.with_name(m.name), m.imports) for m in listed])
            return comp, modules
    comp = B.parse_component(wasm.read() if isinstance(wasm, WasmFile) else wasm)
    modules = {}
    entries = []
    for m in core_modules(comp):
        path = cache.path_for(m.wasm, "module", version)
        module = cache.load_module(wasmtime_engine, path)
        if module is None:
            if progress and len(m.wasm) > LARGE_MODULE:
                progress(f"compiling a {len(m.wasm) / 1e6:.1f} MB core module (first run only)...")
            try:
                module = cc.interruptible(wasmtime.Module, wasmtime_engine, m.wasm)
            except wasmtime.WasmtimeError as e:
                raise ComponentError(f"invalid core module at byte offset {m.offset:#x}: {trap_line(str(e))}") from None
            cache.store(path, bytes(module.serialize()))
        imports = [(imp.module, imp.name) for imp in module.imports]
        modules[m.offset] = CompiledModule(module, imports)
        if path is not None:
            entries.append((m.offset, path, imports))
    cc.write_index(cache, index_path, comp, entries)
    return comp, modules


class FastComponent(LoadedComponent):
    def __init__(self, backend: FastBackend, comp: B.Component, modules: dict[int, CompiledModule]):
        self.backend = backend
        self.comp = comp
        self.modules = modules
        self.shared = SharedTypes()  # types and plans every instance resolves alike, made by the first
        # the first instantiation's steps, replayed by the next (plan.py); False if it cannot be
        self.plan: Plan | None | bool = None

    def imported_instances(self) -> list[str]:
        return [d.name for d in self.comp.imports if d.extern.sort == "instance"]

    def exported_interfaces(self) -> list[str]:
        return [d.name for d in self.comp.exports if d.sort == "instance"]

    def instantiate(self, linker: HostLinker) -> "FastInstance":
        plan = self.plan
        runtime = Runtime(self.backend.wasmtime_engine, self.modules, linker, self.shared, record=plan is None)
        try:
            root = None
            if plan:
                try:
                    root = runtime.replay(plan)
                except NotPlannable:  # this host serves an import differently: walk, as the first time
                    pass
            if root is None:
                root = runtime.instantiate(self.comp)
                if plan is None:
                    self.plan = runtime.plan(root) or False
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

    def close(self) -> None:
        self._funcs.clear()
        self.runtime.close()

    def call(self, interface: str | None, func: str, *args: Any) -> Any:
        f = self._find(interface, func)
        runtime = self.runtime
        try:
            return f(*args)
        except Trap as e:
            raise runtime.guest_trap(e) from None
