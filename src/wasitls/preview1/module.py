"""Running a preview-1 command module: compile (through the cache), link its imports, call `_start`.

Host functions are raw wasmtime functions (`wasmtime_func_new_unchecked`, through the one shim
component/wasmtime_capi.py), so one call costs ~2 µs, not the ~20 µs of wasmtime-py's boxed `Func`.
A host function cannot raise through wasm: what it raises is kept here, wasmtime gets a trap, and
the top-level call re-raises it (an exit, an interrupt) or reports the trap in one line.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import wasmtime

from ..component import wasmtime_capi as capi
from ..component.compile_cache import CompileCache, WasmFile, interruptible
from ..component.errors import ComponentError, GuestTrap
from ..component.values import GuestExit, Trap
from ..wasi.ctx import WasiCtx

PREVIEW1 = "wasi_snapshot_preview1"
LARGE_MODULE = 1 << 20  # modules above this size print a progress line while they compile


class CoreImport:
    __slots__ = ("module", "name", "kind", "params", "results")

    def __init__(self, module: str, name: str, kind: str, params: tuple[str, ...], results: tuple[str, ...]):
        self.module, self.name, self.kind, self.params, self.results = module, name, kind, params, results

    @property
    def label(self) -> str:
        return f"{self.module}.{self.name}"


class LoadedModule:
    """A compiled core module and what it imports and exports."""

    def __init__(self, wasmtime_engine: wasmtime.Engine, module: wasmtime.Module):
        self.wasmtime_engine = wasmtime_engine
        self.module = module
        self.imports = [_core_import(imp) for imp in module.imports]
        self.exports = {exp.name for exp in module.exports}


def _core_import(imp: Any) -> CoreImport:
    ty = imp.type
    if isinstance(ty, wasmtime.FuncType):
        return CoreImport(imp.module, imp.name, "func", tuple(str(p) for p in ty.params),
                          tuple(str(r) for r in ty.results))
    return CoreImport(imp.module, imp.name, type(ty).__name__.replace("Type", "").lower(), (), ())


def load_module(wasmtime_engine: wasmtime.Engine, wasm: bytes | WasmFile, cache: CompileCache,
                progress: Callable[[str], None] | None) -> LoadedModule:
    """Compiles a core module, or reads it from the compile cache (the components' cache and keys)."""
    path = cache.path_for(wasm, "p1module", f"wt{capi.WASMTIME_VERSION}")
    module = cache.load_module(wasmtime_engine, path)
    if module is None:
        data = wasm.read() if isinstance(wasm, WasmFile) else wasm
        if progress and len(data) > LARGE_MODULE:
            progress(f"compiling a {len(data) / 1e6:.1f} MB module (first run only)...")
        try:
            module = interruptible(wasmtime.Module, wasmtime_engine, data)
        except wasmtime.WasmtimeError as e:
            raise ComponentError(f"invalid core module: {capi.trap_line(str(e))}") from None
        cache.store(path, bytes(module.serialize()))
    return LoadedModule(wasmtime_engine, module)


class _Unwind:
    """What a host function raised, kept while wasmtime unwinds the guest as a trap."""

    def __init__(self) -> None:
        self.pending: BaseException | None = None

    def trap_for(self, e: BaseException, label: str) -> int:
        if isinstance(e, (GuestExit, KeyboardInterrupt, SystemExit)):
            message = f"exit {e.status}" if isinstance(e, GuestExit) else type(e).__name__
        elif isinstance(e, Trap):
            message = str(e)
        else:
            message = f"host error in {label}: {type(e).__name__}: {e}"
        if self.pending is None:
            self.pending = e
        return capi.new_trap(message)

    def body(self, adapter: Callable[[Any], None], label: str) -> Callable[[Any, Any, Any, int], int]:
        trap_for = self.trap_for

        def body(env: Any, caller: Any, slots: Any, nslots: int) -> int:
            try:
                adapter(slots)
                return 0
            except BaseException as e:  # noqa: BLE001 - nothing may raise through wasm: it becomes a trap
                return trap_for(e, label)
        return body

    def outcome(self, text: str) -> BaseException:
        """The exception a failed top-level call raises: a pending exit unchanged, else GuestTrap."""
        pending, self.pending = self.pending, None
        if isinstance(pending, (GuestExit, KeyboardInterrupt, SystemExit)):
            return pending
        if pending is not None:
            trap = GuestTrap(str(pending) if isinstance(pending, Trap) else
                             f"host error: {type(pending).__name__}: {pending}")
            trap.__cause__ = pending
            return trap
        return GuestTrap(capi.trap_line(text))


def run_command(loaded: LoadedModule, ctx: WasiCtx, guest_tls: Callable[[], Any],
                warn: Callable[[str], None]) -> int:
    """Instantiates a command module with preview 1 served from `ctx` (and hTLS from `guest_tls()`,
    made on first use), runs `_start`, returns the exit status. Raises GuestTrap after a trap,
    ComponentError when the module cannot start."""
    from .sockets import SocketExtension
    from .wasi_snapshot_preview1 import WasiSnapshotPreview1

    if "_start" not in loaded.exports:
        raise ComponentError("not a command: a core WebAssembly module that exports no _start function")
    store = wasmtime.Store(loaded.wasmtime_engine)
    cx = capi.store_context(store)
    functions = capi.CoreFunctions(cx)
    unwind = _Unwind()
    wasi = WasiSnapshotPreview1(ctx)
    sockets = SocketExtension(wasi, loaded.imports, guest_tls)
    externs = []
    unknown = []
    for imp in loaded.imports:
        adapter = None
        if imp.module == PREVIEW1 and imp.kind == "func":
            adapter = sockets.function(imp) or wasi.function(imp)
        if adapter is None:
            if imp.kind != "func":
                raise ComponentError(f"the module imports a {imp.kind} {imp.label}, which this host does not serve")
            unknown.append(imp.label)
            adapter = _unknown(imp.label)
        externs.append(functions.new(imp.params, imp.results, unwind.body(adapter, imp.label)))
    if sockets.may_use_tls:
        _warm_tls(guest_tls)
    if unknown:
        warn(f"the module imports functions this host does not serve (calling one traps): {', '.join(unknown)}")
    try:
        try:
            instance = capi.instantiate_core(cx, loaded.module, externs)
        except capi.CoreFailure as e:
            if unwind.pending is None and not e.trapped:
                raise ComponentError(f"cannot instantiate the module: {capi.trap_line(str(e))}") from None
            raise unwind.outcome(str(e)) from None  # the start section trapped, or exited
        if "memory" in loaded.exports:
            wasi.memory = capi.LinearMemory(cx, instance["memory"])
        start = capi.CoreCall(cx, instance["_start"], 0, 0, lambda err, trap: unwind.outcome(capi.failure_text(err, trap)))
        start([])
        return 0
    except GuestExit as e:  # proc_exit unwinds the guest as a trap carrying its status
        return e.status
    finally:
        wasi.close()
        del store  # the guest's functions and memory go with it


def run_module(wasm: bytes | WasmFile, ctx: WasiCtx, *, wasmtime_engine: wasmtime.Engine, cache: CompileCache,
               tls_settings: Callable[[], Any], progress: Callable[[str], None] | None,
               warn: Callable[[str], None]) -> int:
    """Loads and runs a command module; its guest's TLS (for hTLS) is made from `tls_settings()` on
    first use. The caller ends `ctx.lifetime` afterwards."""
    loaded = load_module(wasmtime_engine, wasm, cache, progress)
    made: list[Any] = []
    lock = threading.Lock()

    def guest_tls() -> Any:
        with lock:  # the warm-up thread and the guest's first hTLS socket may ask at once
            if not made:
                from ..tls_streams import GuestTls
                made.append(GuestTls(tls_settings(), ctx.lifetime))
            return made[0]

    return run_command(loaded, ctx, guest_tls, warn)


def _warm_tls(guest_tls: Callable[[], Any]) -> None:
    """A guest that can set socket options may ask for hTLS: load the TLS core and the trust store on
    the other core meanwhile (the guest's wasm runs without the GIL), not in its first handshake."""
    def warm() -> None:
        try:
            guest_tls().settings.client_config  # builds the trust store and the OpenSSL client context
        except Exception:  # noqa: BLE001 - the guest's own TLS use reports any problem, in its call
            pass

    threading.Thread(target=warm, name="wasitls tls warm-up", daemon=True).start()


def _unknown(label: str) -> Callable[[Any], None]:
    def adapter(slots: Any) -> None:
        raise Trap(f"called {label}, an import this host does not serve")
    return adapter


__all__ = ["load_module", "run_command", "run_module", "LoadedModule"]
