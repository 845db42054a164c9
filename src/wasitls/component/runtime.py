"""Instantiating a parsed component over wasmtime's core API.

The definitions of `binary.Component` are walked in order, as the component model runs them
(Explainer.md): each adds to one index space of its component's `Scope`. Core modules are
instantiated with wasmtime's core API; `canon lower` makes a core function whose body is a raw
unchecked callback (`wasmtime_func_new_unchecked`, reading and writing `wasmtime_val_raw_t` slots),
`canon lift` a Python callable that calls the core function the same raw way
(`wasmtime_func_call_unchecked`). Lifting and lowering themselves are in `canonical.py`.
"""

from __future__ import annotations

import ctypes
import os
import pickle
from ctypes import CFUNCTYPE, POINTER, addressof, c_size_t, c_uint64, c_void_p
from typing import Any, Callable

import wasmtime
from wasmtime import _ffi as ffi

from . import binary as B
from . import canonical as C
from . import types as T
from .engine import CompileCache, ComponentError, GuestTrap, UnservedImports, WasmFile
from .host import HostLinker, host_function, resource_class
from .values import GuestExit, Trap



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


WASMTIME_VERSION = _wasmtime_version()
LARGE_MODULE = 1 << 20  # modules above this size print a progress line while they compile

# -- raw access to wasmtime's C API -----------------------------------------------------------

_dll = ffi.dll
RAW_CALLBACK = CFUNCTYPE(c_size_t, c_void_p, c_void_p, POINTER(c_uint64), c_size_t)
_func_new_unchecked = CFUNCTYPE(None, c_void_p, c_void_p, RAW_CALLBACK, c_void_p, c_void_p, c_void_p)(
    ("wasmtime_func_new_unchecked", _dll))
_func_call_unchecked = CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p)(
    ("wasmtime_func_call_unchecked", _dll))
_memory_data = CFUNCTYPE(c_void_p, c_void_p, c_void_p)(("wasmtime_memory_data", _dll))
_memory_data_size = CFUNCTYPE(c_size_t, c_void_p, c_void_p)(("wasmtime_memory_data_size", _dll))
_trap_new = CFUNCTYPE(c_void_p, ctypes.c_char_p, c_size_t)(("wasmtime_trap_new", _dll))
_instance_export_get = CFUNCTYPE(ctypes.c_bool, c_void_p, c_void_p, ctypes.c_char_p, c_size_t, c_void_p)(
    ("wasmtime_instance_export_get", _dll))
_instance_new = CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p, c_void_p)(
    ("wasmtime_instance_new", _dll))
_memoryview_from_memory = ctypes.pythonapi.PyMemoryView_FromMemory
_memoryview_from_memory.restype = ctypes.py_object
_memoryview_from_memory.argtypes = [c_void_p, ctypes.c_ssize_t, ctypes.c_int]
_PYBUF_WRITE = 0x200

_CORE_VALTYPES = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64(),
                  "f32": wasmtime.ValType.f32(), "f64": wasmtime.ValType.f64()}


class CoreTrap(Trap):
    """The guest trapped inside a core call made from host code (the message names the trap)."""


def trap_line(text: str) -> str:
    """wasmtime's trap text carries a backtrace; the line naming the trap is what a person needs."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("wasm trap:"):
            return line
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "trap"


class LinearMemory:
    """A core memory seen as one memoryview, rebuilt only when its size changed (it grew)."""

    __slots__ = ("_ctx", "_mem", "_memory", "_size", "_view")

    def __init__(self, ctx: int, memory: "CoreExtern"):
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


class CoreExtern(bytes):
    """A core function, memory, table or global: the raw bytes of its `wasmtime_extern_t`.

    Core instances of a componentize-py guest export thousands of items that are only passed on to
    other core instances; keeping them as raw structs (no wasmtime-py wrapper objects) makes
    instantiation copy bytes instead of building and unpacking Python objects."""

    __slots__ = ()

    @property
    def kind(self) -> int:
        return self[0]


_EXTERN_SIZE = ctypes.sizeof(ffi.wasmtime_extern_t)
_EXTERN_OF = ffi.wasmtime_extern_t.of.offset
_EXTERN_FUNC = ffi.WASMTIME_EXTERN_FUNC.value
_EXTERN_MEMORY = ffi.WASMTIME_EXTERN_MEMORY.value


def func_extern(func: Any) -> CoreExtern:
    """The CoreExtern of a `wasmtime_func_t`."""
    ext = ffi.wasmtime_extern_t()
    ext.kind = _EXTERN_FUNC
    ext.of.func = func
    return CoreExtern(ext)


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
            raw = name.encode("utf-8")
            if not _instance_export_get(self._ctx, self._addr, raw, len(raw), self._out_addr):
                raise KeyError(name)
            found = self._found[name] = CoreExtern(self._out)
        return found


class CoreCall:
    """Calls one core function through `wasmtime_func_call_unchecked` with raw value slots."""

    __slots__ = ("runtime", "func", "_fn_addr", "_buf", "_buf_addr", "_n", "_trap", "_trap_addr", "nresults")

    def __init__(self, runtime: "Runtime", func: CoreExtern, nparams: int, nresults: int):
        self.runtime = runtime
        self.func = ffi.wasmtime_func_t.from_buffer_copy(func, _EXTERN_OF)
        self._fn_addr = addressof(self.func)
        self._n = max(nparams, nresults, 1)
        self._buf = (c_uint64 * (2 * self._n))()
        self._buf_addr = addressof(self._buf)
        self._trap = c_void_p()
        self._trap_addr = addressof(self._trap)
        self.nresults = nresults

    def __call__(self, raw: list[int]) -> int | None:
        buf = self._buf
        k = 0
        for v in raw:
            buf[k] = v
            k += 2
        trap = self._trap
        trap.value = None
        err = _func_call_unchecked(self.runtime.ctx, self._fn_addr, self._buf_addr, self._n, self._trap_addr)
        if err or trap.value:
            raise self.runtime.core_trap(err, trap.value)
        return buf[0] if self.nresults else None


def _describe(value: Any) -> str:
    if value is UNSERVED:
        return "an unserved import"
    return f"a {type(value).__name__}"


# -- the runtime of one instantiation ---------------------------------------------------------


class InstanceState:
    """Per component instance (CanonicalABI.md, "Runtime State"): its handle table and entry flags."""

    __slots__ = ("table", "may_enter", "may_leave", "name")

    def __init__(self, name: str):
        self.table = C.HandleTable()
        self.may_enter = True
        self.may_leave = True  # False while the host runs its realloc or post-return (canonical.py)
        self.name = name


class HostFunc:
    """An imported function, served by the host: called with plain values."""

    __slots__ = ("fn", "ft", "label")

    def __init__(self, fn: Callable[..., Any] | None, ft: T.FuncType, label: str):
        self.fn = fn
        self.ft = ft
        self.label = label

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)  # type: ignore[misc]


class InstanceValue:
    __slots__ = ("exports", "name")

    def __init__(self, exports: dict[str, tuple[str, Any]], name: str = ""):
        self.exports = exports
        self.name = name


class Closure:
    """A nested component definition with the scope its outer aliases refer to."""

    __slots__ = ("defn", "scope")

    def __init__(self, defn: B.Component, scope: "Scope"):
        self.defn = defn
        self.scope = scope


class Deferred:
    """An instance or component type: elaborated when something is imported with it."""

    __slots__ = ("defn", "scope")

    def __init__(self, defn: Any, scope: "Scope"):
        self.defn = defn
        self.scope = scope


class Unserved:
    """Stands in for an import the host does not serve, so linking goes on and lists them all."""

    def __repr__(self) -> str:
        return "<unserved>"


UNSERVED = Unserved()

SORTS = ("core func", "core table", "core memory", "core global", "core tag", "core type", "core module",
         "core instance", "func", "type", "component", "instance")


class Scope:
    """The index spaces of one component (or of one instance/component type being elaborated)."""

    __slots__ = ("parent", "state", "spaces", "exports")

    def __init__(self, parent: "Scope | None", state: InstanceState | None):
        self.parent = parent
        self.state = state
        self.spaces: dict[str, list[Any]] = {s: [] for s in SORTS}
        self.exports: dict[str, tuple[str, Any]] = {}

    def get(self, sort: str, index: int) -> Any:
        space = self.spaces[sort]
        if index >= len(space):
            raise ComponentError(f"invalid component: {sort} index {index} out of bounds ({len(space)} defined)")
        return space[index]

    def add(self, sort: str, value: Any) -> None:
        self.spaces[sort].append(value)

    def outer(self, count: int) -> "Scope":
        s = self
        for _ in range(count):
            if s.parent is None:
                raise ComponentError("invalid component: outer alias beyond the outermost component")
            s = s.parent
        return s


class Runtime:
    """Everything one instantiation owns: the store, the callbacks, what a trap left behind."""

    def __init__(self, engine: wasmtime.Engine, modules: dict[int, "CompiledModule"], linker: HostLinker):
        self.engine = engine
        self.store = wasmtime.Store(engine)
        self.ctx = ctypes.cast(self.store._context(), c_void_p).value
        self.modules = modules
        self.linker = linker
        self.planner = C.Planner()
        self.missing: list[str] = []
        self.pending: BaseException | None = None  # what a host function raised to unwind the guest
        self._keep: list[Any] = []  # ctypes callbacks must outlive the store
        self._memories: dict[CoreExtern, LinearMemory] = {}
        self._calls: dict[tuple[CoreExtern, int, int], CoreCall] = {}
        self._host_resources: dict[tuple[int, str], T.ResourceType] = {}
        self._functypes: dict[tuple, wasmtime.FuncType] = {}

    # traps --------------------------------------------------------------------------------------

    def trap_for(self, e: BaseException, label: str) -> int:
        """Turns what a host function raised into a wasm trap (returned to wasmtime as a pointer)."""
        if isinstance(e, Trap):
            message = str(e)
            if self.pending is None and not isinstance(e, CoreTrap):
                self.pending = e
        elif isinstance(e, (GuestExit, KeyboardInterrupt, SystemExit)):
            message = f"exit {e.status}" if isinstance(e, GuestExit) else type(e).__name__
            if self.pending is None or not isinstance(self.pending, (GuestExit, KeyboardInterrupt, SystemExit)):
                self.pending = e
        else:
            message = f"host error in {label}: {type(e).__name__}: {e}"
            if self.pending is None:
                t = Trap(message)
                t.__cause__ = e
                self.pending = t
        data = message.encode("utf-8", "replace")
        return _trap_new(data, len(data))

    def core_trap(self, err: int | None, trap: int | None) -> CoreTrap:
        if err:
            text = str(wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, POINTER(ffi.wasmtime_error_t))))
            if trap:
                wasmtime.Trap._from_ptr(ctypes.cast(trap, POINTER(ffi.wasm_trap_t)))  # freed with it
        else:
            text = wasmtime.Trap._from_ptr(ctypes.cast(trap, POINTER(ffi.wasm_trap_t))).message
        return CoreTrap(trap_line(text))

    def guest_trap(self, e: BaseException) -> BaseException:
        """The exception a top-level call raises for a trap: a pending exit unchanged, else GuestTrap."""
        pending, self.pending = self.pending, None
        if isinstance(pending, (GuestExit, KeyboardInterrupt, SystemExit)):
            return pending
        if pending is not None:
            g = GuestTrap(str(pending))
            g.__cause__ = pending.__cause__ or pending
            return g
        return GuestTrap(str(e))

    # core functions -------------------------------------------------------------------------

    def new_core_func(self, params: tuple[str, ...], results: tuple[str, ...], adapter: Callable[[Any], None],
                      label: str) -> CoreExtern:
        trap_for = self.trap_for

        def callback(env, caller, slots, nslots):
            try:
                adapter(slots)
                return 0
            except BaseException as e:  # every exception becomes a trap; exits are re-raised by call()
                return trap_for(e, label)

        cb = RAW_CALLBACK(callback)
        self._keep.append(cb)
        func = ffi.wasmtime_func_t()
        _func_new_unchecked(self.ctx, self.functype(params, results), cb, None, None, addressof(func))
        return func_extern(func)

    def functype(self, params: tuple[str, ...], results: tuple[str, ...]) -> int:
        key = (params, results)
        ty = self._functypes.get(key)
        if ty is None:
            ty = wasmtime.FuncType([_CORE_VALTYPES[p] for p in params], [_CORE_VALTYPES[r] for r in results])
            self._functypes[key] = ty
        return ctypes.cast(ty.ptr(), c_void_p).value  # type: ignore[return-value]

    def core_call(self, func: Any, nparams: int, nresults: int) -> CoreCall:
        if not isinstance(func, CoreExtern) or func[0] != _EXTERN_FUNC:
            raise ComponentError(f"invalid component: expected a core function, got {_describe(func)}")
        key = (func, nparams, nresults)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = CoreCall(self, func, nparams, nresults)
        return call

    def memory(self, mem: Any) -> LinearMemory:
        if not isinstance(mem, CoreExtern) or mem[0] != _EXTERN_MEMORY:
            raise ComponentError("invalid component: canonical option `memory` is not a core memory")
        lm = self._memories.get(mem)
        if lm is None:
            lm = self._memories[mem] = LinearMemory(self.ctx, mem)
        return lm

    def host_resource(self, impl: Any, name: str, iface: str) -> T.ResourceType:
        key = (id(impl), name)
        rt = self._host_resources.get(key)
        if rt is None:
            cls = resource_class(impl, name)
            if cls is None:
                self.missing.append(f"{iface}#{name}")
            rt = self._host_resources[key] = T.ResourceType(name, host_class=cls)
        return rt

    # the walk ---------------------------------------------------------------------------------

    def instantiate(self, comp: B.Component) -> InstanceValue:
        scope = Scope(None, InstanceState("root"))
        self.run(comp, scope, None)
        if self.missing:
            raise UnservedImports(self.missing)
        return InstanceValue(scope.exports, "root")

    def run(self, comp: B.Component, scope: Scope, args: dict[str, tuple[str, Any]] | None) -> None:
        for d in comp.definitions:
            handler = _HANDLERS.get(type(d))
            if handler is None:
                raise ComponentError(f"unsupported component definition {type(d).__name__}")
            handler(self, d, scope, args)

    def _check_served(self) -> None:
        if self.missing:
            raise UnservedImports(self.missing)

    def core_module(self, d: B.CoreModule, scope: Scope, args) -> None:
        scope.add("core module", self.modules[d.offset])

    def core_instantiate(self, d: B.CoreInstantiate, scope: Scope, args) -> None:
        self._check_served()  # nothing runs until every import is known to be served
        compiled = scope.get("core module", d.module)
        module = compiled.module
        with_ = {name: scope.get("core instance", i) for name, i in d.args}
        externs = []
        for mod, name in compiled.imports:
            inst = with_.get(mod)
            if inst is None:
                raise ComponentError(f"invalid component: core instance for module import {mod!r} is missing")
            try:
                ext = inst[name]
            except KeyError:
                raise ComponentError(f"invalid component: core import {mod}.{name} is not provided") from None
            except TypeError:
                raise ComponentError(f"invalid component: core import {mod}.{name}: {mod!r} is not a core instance") from None
            if not isinstance(ext, CoreExtern):
                raise ComponentError(f"invalid component: core import {mod}.{name} is {_describe(ext)}")
            externs.append(ext)
        array = (ffi.wasmtime_extern_t * max(1, len(externs))).from_buffer_copy(
            b"".join(externs) if externs else bytes(_EXTERN_SIZE))
        instance = ffi.wasmtime_instance_t()
        trap = c_void_p()
        err = _instance_new(self.ctx, ctypes.cast(module.ptr(), c_void_p).value, addressof(array), len(externs),
                            addressof(instance), addressof(trap))
        if err or trap.value:
            e = self.core_trap(err, trap.value)
            if self.pending is not None or trap.value:  # the start function trapped
                raise self.guest_trap(e) from None
            raise ComponentError(f"cannot instantiate core module: {e}")
        scope.add("core instance", CoreExports(self.ctx, instance))

    def core_inline_exports(self, d: B.CoreInlineExports, scope: Scope, args) -> None:
        scope.add("core instance", {name: scope.get(sort, i) for name, sort, i in d.exports})

    def core_type(self, d: B.CoreTypeDef, scope: Scope, args) -> None:
        scope.add("core type", d.type)

    def nested_component(self, d: B.Component, scope: Scope, args) -> None:
        scope.add("component", Closure(d, scope))

    def instantiate_component(self, d: B.Instantiate, scope: Scope, args) -> None:
        closure = scope.get("component", d.component)
        if not isinstance(closure, Closure):
            raise ComponentError("invalid component: instantiating something that is not a component")
        given = {name: (sort, scope.get(sort, i)) for name, sort, i in d.args}
        inner = Scope(closure.scope, InstanceState(f"component #{len(scope.spaces['instance'])}"))
        self.run(closure.defn, inner, given)
        scope.add("instance", InstanceValue(inner.exports))

    def inline_exports(self, d: B.InlineExports, scope: Scope, args) -> None:
        scope.add("instance", InstanceValue({name: (sort, scope.get(sort, i)) for name, sort, i in d.exports}))

    def alias(self, d: Any, scope: Scope, args) -> None:
        scope.add(d.sort, self.alias_target(d, scope))

    def alias_target(self, d: Any, scope: Scope) -> Any:
        if isinstance(d, B.AliasOuter):
            return scope.outer(d.count).get(d.sort, d.index)
        if isinstance(d, B.AliasCoreExport):
            inst = scope.get("core instance", d.instance)
            try:
                return inst[d.name]
            except KeyError:
                raise ComponentError(f"invalid component: core instance has no export {d.name!r}") from None
        inst = scope.get("instance", d.instance)
        if inst is UNSERVED:
            return UNSERVED
        entry = inst.exports.get(d.name)
        if entry is None:
            raise ComponentError(f"invalid component: instance {inst.name!r} has no export {d.name!r}")
        return entry[1]

    def type_def(self, d: B.TypeDef, scope: Scope, args) -> None:
        scope.add("type", self.resolve_deftype(d.type, scope))

    def canon_lift(self, d: B.CanonLift, scope: Scope, args) -> None:
        ft = scope.get("type", d.type)
        core_func = scope.get("core func", d.core_func)
        label = f"#func{len(scope.spaces['func'])}"
        cx = self.context(d.options, scope)
        params, results = ft.core_signature("lift")
        call = self.core_call(core_func, len(params), len(results))
        post_return = None
        if d.options.post_return is not None:
            pr = self.core_call(scope.get("core func", d.options.post_return), len(results), 0)
            post_return = pr
        scope.add("func", C.LiftedCall(self.planner, cx, ft, call, post_return, label))

    def canon_lower(self, d: B.CanonLower, scope: Scope, args) -> None:
        f = scope.get("func", d.func)
        if f is UNSERVED or (isinstance(f, HostFunc) and f.fn is None):
            scope.add("core func", UNSERVED)
            return
        ft = f.ft
        label = getattr(f, "label", "function")
        cx = self.context(d.options, scope)
        adapter = C.lower_adapter(self.planner, cx, ft, f, label) if not isinstance(f, HostFunc) else \
            C.lower_adapter(self.planner, cx, ft, f.fn, label)
        params, results = ft.core_signature("lower")
        scope.add("core func", self.new_core_func(params, results, adapter, label))

    def canon_resource(self, d: Any, scope: Scope, args) -> None:
        rt = scope.get("type", d.type)
        if rt is UNSERVED:
            scope.add("core func", UNSERVED)
            return
        if not isinstance(rt, T.ResourceType):
            raise ComponentError("invalid component: resource built-in on a type that is not a resource")
        table = scope.state.table  # type: ignore[union-attr]
        if isinstance(d, B.CanonResourceNew):
            def adapter(slots):
                slots[0] = C.resource_new(table, rt, slots[0] & C.M32)
            sig = (("i32",), ("i32",))
        elif isinstance(d, B.CanonResourceRep):
            def adapter(slots):
                slots[0] = C.resource_rep(table, rt, slots[0] & C.M32)
            sig = (("i32",), ("i32",))
        else:
            def adapter(slots):
                C.resource_drop(table, rt, slots[0] & C.M32)
            sig = (("i32",), ())
        scope.add("core func", self.new_core_func(*sig, adapter, f"{type(d).__name__} {rt.name}"))

    def import_(self, d: B.Import, scope: Scope, args) -> None:
        sort = d.extern.sort
        if args is not None:
            given = args.get(d.name)
            if given is None:
                raise ComponentError(f"invalid component: nested component import {d.name!r} is not given")
            value = given[1]
        elif sort == "instance":
            value = self.host_instance(d.name, scope.get("type", d.extern.index))  # type: ignore[arg-type]
        else:
            self.missing.append(d.name)
            value = UNSERVED
        scope.add(sort, value)

    def export(self, d: B.Export, scope: Scope, args) -> None:
        value = scope.get(d.sort, d.index)
        if d.sort == "type" and isinstance(value, T.ResourceType) and value.name.startswith("#"):
            value.name = d.name
        if isinstance(value, C.LiftedCall) and value.label.startswith("#"):
            value.label = d.name  # messages name the export as the guest's world does
        scope.add(d.sort, value)
        scope.exports[d.name] = (d.sort, value)

    # canonical options ------------------------------------------------------------------------

    def context(self, opts: B.CanonOptions, scope: Scope) -> C.Context:
        memory = self.memory(scope.get("core memory", opts.memory)) if opts.memory is not None else None
        realloc = None
        if opts.realloc is not None:
            call = self.core_call(scope.get("core func", opts.realloc), 4, 1)
            realloc = lambda old, old_size, align, size: call([old, old_size, align, size])  # noqa: E731
        state = scope.state
        return C.Context(memory, realloc, opts.string_encoding, state.table, state)  # type: ignore[union-attr]

    # types ------------------------------------------------------------------------------------

    def valtype(self, ref: B.ValTypeRef, scope: Scope) -> Any:
        if isinstance(ref, str):
            return T.PRIMITIVES[ref]
        t = scope.get("type", ref)
        if t is UNSERVED or isinstance(t, T.ValType):
            return t
        raise ComponentError(f"invalid component: type {ref} is not a value type")

    def resource(self, index: int, scope: Scope) -> T.ResourceType:
        rt = scope.get("type", index)
        if rt is UNSERVED:
            return T.ResourceType("<unserved>")
        if not isinstance(rt, T.ResourceType):
            raise ComponentError(f"invalid component: handle of type {index}, which is not a resource")
        return rt

    def resolve_deftype(self, t: Any, scope: Scope) -> Any:
        vt = lambda ref: self.valtype(ref, scope)  # noqa: E731
        opt = lambda ref: None if ref is None else vt(ref)  # noqa: E731
        if isinstance(t, B.PrimDef):
            return T.PRIMITIVES[t.name]
        if isinstance(t, B.RecordDef):
            return T.RecordType([(label, vt(ft)) for label, ft in t.fields])
        if isinstance(t, B.VariantDef):
            return T.VariantType([(label, opt(ct)) for label, ct in t.cases])
        if isinstance(t, B.ListDef):
            return T.ListType(vt(t.elem), t.length)
        if isinstance(t, B.TupleDef):
            return T.TupleType([vt(e) for e in t.elems])
        if isinstance(t, B.FlagsDef):
            return T.FlagsType(t.labels)
        if isinstance(t, B.EnumDef):
            return T.EnumType(t.labels)
        if isinstance(t, B.OptionDef):
            return T.OptionType(vt(t.elem))
        if isinstance(t, B.ResultDef):
            return T.ResultType(opt(t.ok), opt(t.err))
        if isinstance(t, B.OwnDef):
            return T.OwnType(self.resource(t.resource, scope))
        if isinstance(t, B.BorrowDef):
            return T.BorrowType(self.resource(t.resource, scope))
        if isinstance(t, B.FuncTypeDef):
            params = [(name, vt(p)) for name, p in t.params]
            result = opt(t.result)
            if any(p is UNSERVED for _, p in params) or result is UNSERVED:
                return UNSERVED
            return T.FuncType(params, result)
        if isinstance(t, B.ResourceDef):
            return self.guest_resource(t, scope)
        if isinstance(t, (B.InstanceTypeDef, B.ComponentTypeDef)):
            return Deferred(t, scope)
        raise ComponentError(f"unsupported type definition {type(t).__name__}")

    def guest_resource(self, t: B.ResourceDef, scope: Scope) -> T.ResourceType:
        if t.rep != "i32":
            raise ComponentError(f"unsupported resource representation {t.rep}")
        rt = T.ResourceType(f"#resource{len(scope.spaces['type'])}", instance=scope.state)
        if t.dtor is not None:
            call = self.core_call(scope.get("core func", t.dtor), 1, 0)
            rt.dtor = lambda rep: call([rep])
        return rt

    def host_instance(self, name: str, itype: Any) -> Any:
        """Elaborates an imported instance type against the host interface serving `name`."""
        if not isinstance(itype, Deferred) or not isinstance(itype.defn, B.InstanceTypeDef):
            self.missing.append(name)
            return UNSERVED
        impl = self.linker.resolve(name)
        if impl is None:
            self.missing.append(name)
            return UNSERVED
        ts = Scope(itype.scope, None)
        exports: dict[str, tuple[str, Any]] = {}
        for decl in itype.defn.decls:
            if isinstance(decl, B.DeclType):
                ts.add("type", self.resolve_deftype(decl.type, ts))
            elif isinstance(decl, B.DeclCoreType):
                ts.add("core type", decl.type)
            elif isinstance(decl, B.DeclAlias):
                ts.add(decl.alias.sort, self.alias_target(decl.alias, ts))
            elif isinstance(decl, B.DeclExport):
                ext = decl.extern
                if ext.sort == "type":
                    value = self.host_resource(impl, decl.name, name) if ext.index is None else ts.get("type", ext.index)
                elif ext.sort == "func":
                    ft = ts.get("type", ext.index)  # type: ignore[arg-type]
                    fn = host_function(impl, decl.name)
                    if fn is None:
                        self.missing.append(f"{name}#{decl.name}")
                    value = HostFunc(fn, ft, f"{name}#{decl.name}")
                else:
                    self.missing.append(f"{name}#{decl.name}")
                    value = UNSERVED
                ts.add(ext.sort, value)
                exports[decl.name] = (ext.sort, value)
        return InstanceValue(exports, name)


_HANDLERS: dict[type, Callable[..., None]] = {
    B.CoreModule: Runtime.core_module,
    B.CoreInstantiate: Runtime.core_instantiate,
    B.CoreInlineExports: Runtime.core_inline_exports,
    B.CoreTypeDef: Runtime.core_type,
    B.Component: Runtime.nested_component,
    B.Instantiate: Runtime.instantiate_component,
    B.InlineExports: Runtime.inline_exports,
    B.AliasExport: Runtime.alias,
    B.AliasCoreExport: Runtime.alias,
    B.AliasOuter: Runtime.alias,
    B.TypeDef: Runtime.type_def,
    B.CanonLift: Runtime.canon_lift,
    B.CanonLower: Runtime.canon_lower,
    B.CanonResourceNew: Runtime.canon_resource,
    B.CanonResourceDrop: Runtime.canon_resource,
    B.CanonResourceRep: Runtime.canon_resource,
    B.Import: Runtime.import_,
    B.Export: Runtime.export,
}


# -- compiling core modules, with the cache ---------------------------------------------------


def core_modules(comp: B.Component) -> list[B.CoreModule]:
    found = []
    for d in comp.definitions:
        if isinstance(d, B.CoreModule):
            found.append(d)
        elif isinstance(d, B.Component):
            found.extend(core_modules(d))
    return found


class CompiledModule:
    __slots__ = ("module", "imports")

    def __init__(self, module: wasmtime.Module, imports: list[tuple[str, str]]):
        self.module = module
        self.imports = imports  # (module, name) of each import, in order


def _deserialize(engine: wasmtime.Engine, path: Any) -> wasmtime.Module | None:
    if path is None or not path.exists():
        return None
    try:
        return wasmtime.Module.deserialize_file(engine, str(path))
    except wasmtime.WasmtimeError:
        return None  # stale or corrupt: compile again


def load_component(engine: wasmtime.Engine, wasm: bytes | WasmFile, cache: CompileCache,
                   progress: Callable[[str], None] | None) -> tuple[B.Component, dict[int, CompiledModule]]:
    """Parses the component and compiles its core modules (nested ones too), through the cache.

    A second load of the same component reads an index (the parsed definitions, each module's cache
    file and imports) instead of parsing and hashing every module again: start-up time counts.
    """
    version = f"wt{WASMTIME_VERSION}"
    index_path = cache.path_for(wasm, "index", version)
    if index_path is not None and index_path.exists():
        try:
            comp, entries = pickle.loads(index_path.read_bytes())
            modules = {}
            for offset, (name, imports) in entries.items():
                module = _deserialize(engine, index_path.with_name(name))
                if module is None:
                    raise LookupError(name)
                modules[offset] = CompiledModule(module, imports)
            return comp, modules
        except Exception:  # noqa: BLE001 - any unreadable index only costs a full load
            pass
    comp = B.parse_component(wasm.read() if isinstance(wasm, WasmFile) else wasm)
    modules = {}
    entries = {}
    for m in core_modules(comp):
        path = cache.path_for(m.wasm, "module", version)
        module = _deserialize(engine, path)
        if module is None:
            if progress and len(m.wasm) > LARGE_MODULE:
                progress(f"compiling a {len(m.wasm) / 1e6:.1f} MB core module (first run only)...")
            try:
                module = wasmtime.Module(engine, m.wasm)
            except wasmtime.WasmtimeError as e:
                raise ComponentError(f"invalid core module at byte offset {m.offset:#x}: {trap_line(str(e))}") from None
            cache.store(path, bytes(module.serialize()))
        imports = [(imp.module, imp.name) for imp in module.imports]
        modules[m.offset] = CompiledModule(module, imports)
        if path is not None:
            entries[m.offset] = (path.name, imports)
    if index_path is not None:
        cache.store(index_path, pickle.dumps((_without_module_bytes(comp), entries), protocol=pickle.HIGHEST_PROTOCOL))
    return comp, modules


def _without_module_bytes(comp: B.Component) -> B.Component:
    stripped = B.Component(comp.offset, comp.depth)
    for d in comp.definitions:
        if isinstance(d, B.CoreModule):
            d = B.CoreModule(b"", d.offset)
        elif isinstance(d, B.Component):
            d = _without_module_bytes(d)
        stripped.definitions.append(d)
    return stripped
