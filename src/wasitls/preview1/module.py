"""Running a preview-1 command module: compile (through the cache), link its imports, call `_start`.

Host functions are raw wasmtime functions (`wasmtime_func_new_unchecked`) made by the component
runtime's shim, so one call costs ~2 µs, not the ~20 µs of wasmtime-py's boxed `Func` path.
"""

from __future__ import annotations

from typing import Any, Callable

import wasmtime

from ..component.engine import CompileCache, ComponentError, WasmFile
from ..component.host import HostLinker
from ..component.runtime import (LARGE_MODULE, WASMTIME_VERSION, CoreExports, Runtime, Trap, _deserialize,
                                 trap_line)
from ..component.values import GuestExit
from ..wasi.ctx import WasiCtx

WASM_MAGIC = b"\0asm"
CORE_VERSION = b"\x01\0\0\0"
PREVIEW1 = "wasi_snapshot_preview1"
_VALTYPE_NAMES = {"i32": "i32", "i64": "i64", "f32": "f32", "f64": "f64"}


def is_core_module(head: bytes) -> bool:
    """A core module's preamble (a component has the same magic, then version 0x0d and layer 1)."""
    return head[:4] == WASM_MAGIC and head[4:8] == CORE_VERSION


class CoreImport:
    __slots__ = ("module", "name", "kind", "params", "results")

    def __init__(self, module: str, name: str, kind: str, params: tuple[str, ...], results: tuple[str, ...]):
        self.module, self.name, self.kind, self.params, self.results = module, name, kind, params, results

    @property
    def label(self) -> str:
        return f"{self.module}.{self.name}"


class LoadedModule:
    """A compiled core module and what it imports and exports."""

    def __init__(self, engine: wasmtime.Engine, module: wasmtime.Module):
        self.engine = engine
        self.module = module
        self.imports = [_core_import(imp) for imp in module.imports]
        self.exports = {exp.name for exp in module.exports}


def _core_import(imp: Any) -> CoreImport:
    ty = imp.type
    if isinstance(ty, wasmtime.FuncType):
        return CoreImport(imp.module, imp.name, "func", tuple(str(p) for p in ty.params),
                          tuple(str(r) for r in ty.results))
    return CoreImport(imp.module, imp.name, type(ty).__name__.replace("Type", "").lower(), (), ())


def load_module(engine: wasmtime.Engine, wasm: bytes | WasmFile, cache: CompileCache,
                progress: Callable[[str], None] | None) -> LoadedModule:
    """Compiles a core module, or reads it from the compile cache (same key scheme as components)."""
    path = cache.path_for(wasm, "p1module", f"wt{WASMTIME_VERSION}")
    module = _deserialize(engine, path)
    if module is None:
        data = wasm.read() if isinstance(wasm, WasmFile) else wasm
        if progress and len(data) > LARGE_MODULE:
            progress(f"compiling a {len(data) / 1e6:.1f} MB module (first run only)...")
        try:
            module = wasmtime.Module(engine, data)
        except wasmtime.WasmtimeError as e:
            raise ComponentError(f"invalid core module: {trap_line(str(e))}") from None
        cache.store(path, bytes(module.serialize()))
    return LoadedModule(engine, module)


def run_command(loaded: LoadedModule, ctx: WasiCtx, warn: Callable[[str], None]) -> int:
    """Instantiates a command module with preview 1 served from `ctx`, runs `_start`, returns the status."""
    from .sockets import SocketExtension
    from .wasi_snapshot_preview1 import WasiSnapshotPreview1

    if "_start" not in loaded.exports:
        raise ComponentError("not a command: a core WebAssembly module that exports no _start function")
    runtime = Runtime(loaded.engine, {}, HostLinker())
    wasi = WasiSnapshotPreview1(ctx)
    sockets = SocketExtension(wasi, loaded.imports)
    externs = []
    unknown = []
    for imp in loaded.imports:
        fn = None
        if imp.module == PREVIEW1 and imp.kind == "func":
            fn = sockets.function(imp) or wasi.function(imp)
        if fn is None:
            if imp.kind != "func":
                raise ComponentError(f"the module imports a {imp.kind} {imp.label}, which this host does not serve")
            unknown.append(imp.label)
            fn = _unknown(imp.label, len(imp.results))
        externs.append(runtime.new_core_func(imp.params, imp.results, fn, imp.label))
    if any(imp.name == "sock_setsockopt" for imp in loaded.imports):
        _warm_tls(ctx)
    if unknown:
        warn(f"the module imports functions this host does not serve (calling one traps): {', '.join(unknown)}")
    try:
        instance = _instantiate(runtime, loaded.module, externs)
        memory = instance["memory"] if "memory" in loaded.exports else None
        if memory is not None:
            wasi.memory = runtime.memory(memory)
        start = runtime.core_call(instance["_start"], 0, 0)
        start([])
        return 0
    except Trap as e:
        outcome = runtime.guest_trap(e)  # a proc_exit unwinds as a trap carrying its status
        if isinstance(outcome, GuestExit):
            return outcome.status
        raise outcome from None
    finally:
        wasi.close()


def _instantiate(runtime: Runtime, module: wasmtime.Module, externs: list[Any]) -> CoreExports:
    import ctypes
    from ctypes import addressof, c_void_p

    from wasmtime import _ffi as ffi

    from ..component.runtime import _EXTERN_SIZE, _instance_new

    array = (ffi.wasmtime_extern_t * max(1, len(externs))).from_buffer_copy(
        b"".join(externs) if externs else bytes(_EXTERN_SIZE))
    instance = ffi.wasmtime_instance_t()
    trap = c_void_p()
    err = _instance_new(runtime.ctx, ctypes.cast(module.ptr(), c_void_p).value, addressof(array), len(externs),
                        addressof(instance), addressof(trap))
    if err or trap.value:
        e = runtime.core_trap(err, trap.value)
        if runtime.pending is not None or trap.value:  # the start section trapped, or called proc_exit
            raise e
        raise ComponentError(f"cannot instantiate the module: {e}")
    return CoreExports(runtime.ctx, instance)


def _warm_tls(ctx: WasiCtx) -> None:
    """A guest that can set socket options may ask for hTLS: load the TLS core and the trust store on
    the other core meanwhile (the guest's wasm runs without the GIL), not in its first handshake."""
    import threading

    def warm() -> None:
        try:
            from ..tls import connection, engine  # noqa: F401
            ctx.tls.client_config  # builds the trust store and the OpenSSL client context
        except Exception:  # noqa: BLE001 - the guest's own TLS use reports any problem, in its call
            pass

    threading.Thread(target=warm, name="wasitls tls warm-up", daemon=True).start()


def _unknown(label: str, nresults: int) -> Callable[[Any], None]:
    def adapter(slots: Any) -> None:
        raise Trap(f"called {label}, an import this host does not serve")
    return adapter


__all__ = ["is_core_module", "load_module", "run_command", "LoadedModule"]
