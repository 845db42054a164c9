"""wasmtime's C API, where wasmtime-py's public API is too slow or does not reach.

This is the one module that imports `wasmtime._ffi` (wasmtime-py's ctypes declarations of the C API)
or touches a private member of a wasmtime-py object; a wasmtime-py upgrade that moves them breaks
here and nowhere else. It offers:

  - core instances: instantiate a compiled module with raw externs, look exports up one by one;
  - core functions: host functions whose body reads and writes raw value slots
    (`wasmtime_func_new_unchecked`) and calls of guest functions the same way;
  - linear memory as a writable memoryview, and the trap and error texts wasmtime returns;
  - for the reference backend: wasmtime's component value structs (`ffi`) and the few private
    wasmtime-py members its host functions need.

Its core part knows nothing of components: the instantiation walk (runtime.py) uses it, and so can
a core-module ABI (preview 1): `store_context` of a `wasmtime.Store`, host functions from
`CoreFunctions.new`, `instantiate_core` with them in the module's import order (`module.imports`),
the instance's memory as `LinearMemory(ctx, exports["memory"]).view()`, and `CoreCall` for `_start`.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import CFUNCTYPE, POINTER, PYFUNCTYPE, addressof, c_size_t, c_uint64, c_void_p
from typing import Any, Callable

import wasmtime
from wasmtime import _ffi as ffi


def _wasmtime_version() -> str:
    """The installed wasmtime's version, read from its dist-info name (importlib.metadata costs 10 ms)."""
    site = os.path.dirname(os.path.dirname(wasmtime.__file__))
    try:
        for entry in os.listdir(site):
            if entry.startswith("wasmtime-") and entry.endswith(".dist-info"):
                return entry[len("wasmtime-"):-len(".dist-info")]
    except OSError:
        pass
    import importlib.metadata

    return importlib.metadata.version("wasmtime")


# compiled code is only valid for the wasmtime that made it: cache keys carry this
WASMTIME_VERSION = _wasmtime_version()


def trap_line(text: str) -> str:
    """wasmtime's trap text carries a backtrace; the line naming the trap is what a person needs."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("wasm trap:"):
            return line
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "trap"


# -- raw entry points -------------------------------------------------------------------------

_dll = ffi.dll
# a host function's body: (env, caller, value slots, number of slots) -> trap pointer or 0
RAW_CALLBACK = CFUNCTYPE(c_size_t, c_void_p, c_void_p, POINTER(c_uint64), c_size_t)
# Short calls keep the GIL (PYFUNCTYPE): handing it over for a microsecond call lets another thread take
# it, and getting it back waits for that thread's switch interval (`wasitls serve` instantiates while
# other threads answer requests). A guest call (`_func_call_unchecked`) still releases it.
_func_new_unchecked = PYFUNCTYPE(None, c_void_p, c_void_p, RAW_CALLBACK, c_void_p, c_void_p, c_void_p)(
    ("wasmtime_func_new_unchecked", _dll))
_func_call_unchecked = CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p)(
    ("wasmtime_func_call_unchecked", _dll))
_memory_data = PYFUNCTYPE(c_void_p, c_void_p, c_void_p)(("wasmtime_memory_data", _dll))
_memory_data_size = PYFUNCTYPE(c_size_t, c_void_p, c_void_p)(("wasmtime_memory_data_size", _dll))
_trap_new = PYFUNCTYPE(c_void_p, ctypes.c_char_p, c_size_t)(("wasmtime_trap_new", _dll))
_instance_export_get = PYFUNCTYPE(ctypes.c_bool, c_void_p, c_void_p, ctypes.c_char_p, c_size_t, c_void_p)(
    ("wasmtime_instance_export_get", _dll))
_instance_new = PYFUNCTYPE(c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p, c_void_p)(
    ("wasmtime_instance_new", _dll))
_memoryview_from_memory = ctypes.pythonapi.PyMemoryView_FromMemory
_memoryview_from_memory.restype = ctypes.py_object
_memoryview_from_memory.argtypes = [c_void_p, ctypes.c_ssize_t, ctypes.c_int]
_PYBUF_WRITE = 0x200

_CORE_VALTYPES = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64(),
                  "f32": wasmtime.ValType.f32(), "f64": wasmtime.ValType.f64()}


def store_context(store: wasmtime.Store) -> int:
    """The address of a store's `wasmtime_context_t`, which every raw call takes first."""
    return ctypes.cast(store._context(), c_void_p).value  # type: ignore[return-value]


def new_trap(message: str) -> int:
    """A `wasm_trap_t` carrying `message`, as a host function's body returns it to wasmtime."""
    data = message.encode("utf-8", "replace")
    return _trap_new(data, len(data))


def failure_text(err: int | None, trap: int | None) -> str:
    """The text of what a raw call returned (a `wasmtime_error_t`, a `wasm_trap_t`, or both); frees them."""
    if err:
        text = str(wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, POINTER(ffi.wasmtime_error_t))))
        if trap:
            wasmtime.Trap._from_ptr(ctypes.cast(trap, POINTER(ffi.wasm_trap_t)))  # freed with it
        return text
    return wasmtime.Trap._from_ptr(ctypes.cast(trap, POINTER(ffi.wasm_trap_t))).message


# -- externs ----------------------------------------------------------------------------------


class CoreExtern(bytes):
    """A core function, memory, table or global: the raw bytes of its `wasmtime_extern_t`.

    Core instances of a componentize-py guest export thousands of items that are only passed on to
    other core instances; keeping them as raw structs (no wasmtime-py wrapper objects) makes
    instantiation copy bytes instead of building and unpacking Python objects."""

    __slots__ = ()  # its first byte is the kind (EXTERN_FUNC, EXTERN_MEMORY, ...)


EXTERN_FUNC = ffi.WASMTIME_EXTERN_FUNC.value
EXTERN_MEMORY = ffi.WASMTIME_EXTERN_MEMORY.value
_EXTERN_SIZE = ctypes.sizeof(ffi.wasmtime_extern_t)
_EXTERN_OF = ffi.wasmtime_extern_t.of.offset


def func_extern(func: Any) -> CoreExtern:
    """The CoreExtern of a `wasmtime_func_t`."""
    ext = ffi.wasmtime_extern_t()
    ext.kind = EXTERN_FUNC
    ext.of.func = func
    return CoreExtern(ext)


class LinearMemory:
    """A core memory seen as one memoryview, rebuilt only when its size changed (it grew)."""

    __slots__ = ("_ctx", "_mem", "_memory", "_size", "_view")

    def __init__(self, ctx: int, memory: CoreExtern):
        self._memory = ffi.wasmtime_memory_t.from_buffer_copy(memory, _EXTERN_OF)
        self._ctx = ctx
        self._mem = addressof(self._memory)
        self._size = -1
        self._view: memoryview | None = None

    def view(self) -> memoryview:
        size = _memory_data_size(self._ctx, self._mem)
        if size != self._size:
            base = _memory_data(self._ctx, self._mem)
            self._view = _memoryview_from_memory(base, size, _PYBUF_WRITE) if size else memoryview(b"")
            self._size = size
        return self._view  # type: ignore[return-value]


class CoreExports:
    """A core instance's exports, looked up one name at a time (wasmtime_instance_export_get):
    listing all of them costs more than the instantiation itself for modules with thousands."""

    __slots__ = ("_ctx", "_instance", "_addr", "_found", "_out", "_out_addr")

    def __init__(self, ctx: int, instance: Any):
        self._ctx = ctx
        self._instance = instance  # a wasmtime_instance_t
        self._addr = addressof(instance)
        self._found: dict[str, CoreExtern] = {}
        self._out = ffi.wasmtime_extern_t()
        self._out_addr = addressof(self._out)

    def __getitem__(self, name: str) -> CoreExtern:
        found = self._found.get(name)
        if found is None:
            found = self._found[name] = self.by_raw_name(name.encode("utf-8"))
        return found

    def by_raw_name(self, raw: bytes) -> CoreExtern:
        """An export by its UTF-8 name, not remembered (a replayed instantiation asks for each once)."""
        if not _instance_export_get(self._ctx, self._addr, raw, len(raw), self._out_addr):
            raise KeyError(raw.decode("utf-8", "replace"))
        return CoreExtern(self._out)


class CoreFailure(Exception):
    """A raw call failed: `text` is wasmtime's message; `trapped` tells a trap from a link error."""

    def __init__(self, text: str, trapped: bool):
        super().__init__(text)
        self.trapped = trapped


_EXTERN_ARRAYS: dict[int, Any] = {}


def instantiate_core(ctx: int, module: wasmtime.Module, externs: list[CoreExtern]) -> CoreExports:
    """Instantiates a compiled core module with its imports, in the module's import order.

    Raises CoreFailure when wasmtime refuses the imports or the start function traps."""
    n = max(1, len(externs))
    array_type = _EXTERN_ARRAYS.get(n)
    if array_type is None:  # a ctypes array type is a class, and classes are freed only by the cycle collector
        array_type = _EXTERN_ARRAYS.setdefault(n, ffi.wasmtime_extern_t * n)
    array = array_type.from_buffer_copy(b"".join(externs) if externs else bytes(_EXTERN_SIZE))
    instance = ffi.wasmtime_instance_t()
    trap = c_void_p()
    err = _instance_new(ctx, ctypes.cast(module.ptr(), c_void_p).value, addressof(array), len(externs),
                        addressof(instance), addressof(trap))
    if err or trap.value:
        trapped = bool(trap.value)
        raise CoreFailure(failure_text(err, trap.value), trapped)
    return CoreExports(ctx, instance)


# -- core functions ---------------------------------------------------------------------------


class CoreFunctions:
    """Makes host functions in one store; keeps what they need alive as long as the store lives."""

    def __init__(self, ctx: int, functypes: dict[tuple, tuple[wasmtime.FuncType, int]] | None = None):
        self.ctx = ctx
        self._keep: list[Any] = []  # ctypes callbacks must outlive the store
        # core function types by (params, results), with their pointers: making one costs ~10 us, so the
        # stores of one engine may share them (a type is bound to the first engine it is used with)
        self._functypes = {} if functypes is None else functypes

    def new(self, params: tuple[str, ...], results: tuple[str, ...],
            body: Callable[[Any, Any, Any, int], int]) -> CoreExtern:
        """A core function of type params -> results (core value type names). `body(env, caller,
        slots, nslots)` reads its arguments from `slots` and writes its results there, and returns
        0, or a trap from `new_trap`; it must not raise. `slots` holds 16-byte `wasmtime_val_raw_t`
        seen as u64 pairs: value k is `slots[2 * k]` (an i32 in its low 32 bits)."""
        cb = RAW_CALLBACK(body)
        self._keep.append(cb)
        func = ffi.wasmtime_func_t()
        _func_new_unchecked(self.ctx, self._functype(params, results), cb, None, None, addressof(func))
        return func_extern(func)

    def new_shared(self, params: tuple[str, ...], results: tuple[str, ...], callback: Any, env: int) -> CoreExtern:
        """As `new`, but the body is `callback`, a RAW_CALLBACK shared by many functions (made once: making
        one costs more than the function) which tells them apart by `env`, its first argument (not 0).
        The caller keeps `callback` alive as long as the store."""
        func = ffi.wasmtime_func_t()
        _func_new_unchecked(self.ctx, self._functype(params, results), callback, env, None, addressof(func))
        return func_extern(func)

    def _functype(self, params: tuple[str, ...], results: tuple[str, ...]) -> int:
        key = (params, results)
        found = self._functypes.get(key)
        if found is None:
            ty = wasmtime.FuncType([_CORE_VALTYPES[p] for p in params], [_CORE_VALTYPES[r] for r in results])
            found = self._functypes.setdefault(key, (ty, ctypes.cast(ty.ptr(), c_void_p).value))
        return found[1]  # type: ignore[return-value]


class CoreCall:
    """Calls one core function through `wasmtime_func_call_unchecked` with raw value slots.

    `on_failure(err, trap)` turns a failed call into the exception to raise."""

    __slots__ = ("ctx", "func", "_fn_addr", "_buf", "_buf_addr", "_n", "_trap", "_trap_addr", "nresults",
                 "on_failure")

    def __init__(self, ctx: int, func: CoreExtern, nparams: int, nresults: int,
                 on_failure: Callable[[int | None, int | None], BaseException]):
        self.ctx = ctx
        self.func = ffi.wasmtime_func_t.from_buffer_copy(func, _EXTERN_OF)
        self._fn_addr = addressof(self.func)
        self._n = max(nparams, nresults, 1)
        self._buf = (c_uint64 * (2 * self._n))()
        self._buf_addr = addressof(self._buf)
        self._trap = c_void_p()
        self._trap_addr = addressof(self._trap)
        self.nresults = nresults
        self.on_failure = on_failure

    def __call__(self, raw: list[int]) -> int | None:
        buf = self._buf
        k = 0
        for v in raw:
            buf[k] = v
            k += 2
        trap = self._trap
        trap.value = None
        err = _func_call_unchecked(self.ctx, self._fn_addr, self._buf_addr, self._n, self._trap_addr)
        if err or trap.value:
            raise self.on_failure(err, trap.value)
        return buf[0] if self.nresults else None


# -- the reference backend's private needs ------------------------------------------------------
# wasmtime-py's component API converts values through its own Python classes; the reference backend
# converts by the function's type straight into wasmtime's `wasmtime_component_val_t` (the structs of
# `ffi`) and registers host functions with the C API. What that takes of wasmtime-py's private side:


def component_functype(ty_raw: Any, owner: Any) -> Any:
    """The `wasmtime.component.FuncType` of a host function's type pointer (borrowed from `owner`)."""
    from wasmtime import component as wc

    return wc.FuncType._from_ptr(ty_raw, owner=owner)


def resource_rep(store: wasmtime.Store, raw: Any) -> int:
    """The rep of a host resource handle in an argument array; the handle stays wasmtime's."""
    from wasmtime import component as wc

    handle = wc.ResourceAny._from_ptr(raw)
    try:
        return handle.to_host(store).rep
    finally:
        handle._consume()  # not ours to free


def resource_to_raw(store: wasmtime.Store, host: Any) -> Any:
    """A `wasmtime.component.ResourceHost` as the raw handle a result slot takes (ownership moves)."""
    return host.to_any(store)._consume()


def error_pointer(message: str) -> int:
    """A `wasmtime_error_t` carrying `message`, as a component host function returns it."""
    return ctypes.cast(wasmtime.WasmtimeError(message)._consume(), c_void_p).value  # type: ignore[return-value]


@CFUNCTYPE(None, c_void_p)
def _noop_finalizer(_data):  # callbacks are kept alive by their owner, nothing to free here
    return None


def add_component_func(linker_instance: Any, name: str, callback: Any) -> None:
    """Defines `name` in a component linker instance as a host function with a raw callback
    (a `ffi.wasmtime_component_func_callback_t`, which the caller keeps alive)."""
    raw = name.encode()
    err = ffi.wasmtime_component_linker_instance_add_func(
        linker_instance.ptr(), ctypes.create_string_buffer(raw), len(raw), callback, None, _noop_finalizer)
    if err:
        raise wasmtime.WasmtimeError._from_ptr(err)


def call_component_func(func: Any, store: wasmtime.Store, args: Any, nargs: int, out: Any) -> str | None:
    """Calls a component function with raw values (`out` None when it returns nothing); the error
    text if it failed."""
    err = ffi.wasmtime_component_func_call(ctypes.byref(func._func), store._context(), args, nargs,
                                           ctypes.byref(out) if out is not None else None,
                                           0 if out is None else 1)
    if err:
        return str(wasmtime.WasmtimeError._from_ptr(err))
    return None
