"""The `reference` backend: wasmtime-py's component API, kept as the model the fast backend is tested against.

Host functions are registered with the C API directly (through `wasmtime_capi`) so values convert between wasmtime's
`wasmtime_component_val_t` and the plain values of `values.py` by the function's own type; the
guest never sees a Python object and host code never sees a wasmtime one.
"""

from __future__ import annotations

import ctypes
import itertools
from ctypes import byref
from typing import Any

import wasmtime
from wasmtime import component as wc

from . import compile_cache as cc
from . import linker as linking
from .canonical import list_length
from . import wasmtime_capi as capi
from .backend import Backend, ComponentInstance, LoadedComponent
from .compile_cache import CompileCache, WasmFile
from .errors import ComponentError, GuestTrap, UnservedImports
from .values import Err, GuestExit, Ok, Some, Trap, Variant
from .wasmtime_capi import WASMTIME_VERSION, ffi, trap_line

_LARGE = 1 << 20  # components above this size show a progress line while they compile

# Type descriptors: small tuples built once per imported function from wasmtime's ValType objects.
_SCALARS = {
    wc.Bool: "bool", wc.U8: "u8", wc.U16: "u16", wc.U32: "u32", wc.U64: "u64",
    wc.S8: "s8", wc.S16: "s16", wc.S32: "s32", wc.S64: "s64", wc.F32: "f32", wc.F64: "f64",
    wc.Char: "char", wc.String: "string",
}
_KIND = {
    "bool": ffi.WASMTIME_COMPONENT_BOOL, "u8": ffi.WASMTIME_COMPONENT_U8, "u16": ffi.WASMTIME_COMPONENT_U16,
    "u32": ffi.WASMTIME_COMPONENT_U32, "u64": ffi.WASMTIME_COMPONENT_U64, "s8": ffi.WASMTIME_COMPONENT_S8,
    "s16": ffi.WASMTIME_COMPONENT_S16, "s32": ffi.WASMTIME_COMPONENT_S32, "s64": ffi.WASMTIME_COMPONENT_S64,
    "f32": ffi.WASMTIME_COMPONENT_F32, "f64": ffi.WASMTIME_COMPONENT_F64,
}
_FIELD = {"bool": "boolean", "u8": "u8", "u16": "u16", "u32": "u32", "u64": "u64", "s8": "s8", "s16": "s16",
          "s32": "s32", "s64": "s64", "f32": "f32", "f64": "f64"}


def _can_be_none(desc: tuple) -> bool:
    return desc[0] == "option"


# wasmtime 50 traps, before the host function is called, when a call from the guest lends the host
# two (or more) borrowed resources: its text is wasmtime's "this is a bug" page, of no use to a user
_TWO_BORROW_BUG = "deferred host scope has no call context"


def _borrows(ty: Any) -> int:
    """How many borrowed handles a value of this type may carry (2 for a list that holds any)."""
    if isinstance(ty, wc.BorrowType):
        return 1
    if isinstance(ty, wc.ListType):
        return 2 * min(1, _borrows(ty.element))
    if isinstance(ty, wc.RecordType):
        return sum(_borrows(t) for _, t in ty.fields)
    if isinstance(ty, wc.TupleType):
        return sum(_borrows(t) for t in ty.elements)
    if isinstance(ty, wc.VariantType):
        return max((_borrows(t) for _, t in ty.cases if t is not None), default=0)
    if isinstance(ty, wc.OptionType):
        return _borrows(ty.payload)
    if isinstance(ty, wc.ResultType):
        return max(_borrows(t) for t in (ty.ok, ty.err) if t is not None) if (ty.ok or ty.err) else 0
    return 0


def _two_borrow_line(text: str, candidates: list[str]) -> str:
    """The line for wasmtime's two-borrow trap: the function the guest called if its backtrace names
    it, else those this component imports that could be it."""
    limitation = (f"the reference engine (wasmtime-py {WASMTIME_VERSION}'s component API) cannot make host calls "
                  "that borrow two resources; use the fast engine (--engine fast)")
    frames = [line.rstrip() for line in text.splitlines()]  # "N: 0x... - module!adapter [method]r.f"
    named = [c for c in candidates
             if any(f.endswith((" " + c.split("#", 1)[1], "!" + c.split("#", 1)[1])) for f in frames)]
    if len(named) == 1:
        return f"{named[0]}: {limitation}"
    shown = named or candidates
    listed = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
    return f"{limitation} (it was one of: {listed})" if shown else limitation


class _Resources:
    """Host resource objects the guest holds, by rep; one table per store."""

    def __init__(self) -> None:
        self.objects: dict[int, Any] = {}
        self._reps = itertools.count(1)
        self.types: list[tuple[wc.ResourceType, int]] = []

    def type_id(self, rtype: wc.ResourceType) -> int | None:
        for known, tid in self.types:
            if known == rtype:
                return tid
        return None


class _Converter:
    def __init__(self, store: wasmtime.Store, resources: _Resources):
        self.store = store
        self.res = resources

    # -- types ---------------------------------------------------------------------------------
    def describe(self, ty: Any) -> tuple:
        name = _SCALARS.get(type(ty))
        if name:
            return (name,)
        if isinstance(ty, wc.ListType):
            return ("list", self.describe(ty.element))
        if isinstance(ty, wc.RecordType):
            return ("record", [(n, self.describe(t)) for n, t in ty.fields])
        if isinstance(ty, wc.TupleType):
            return ("tuple", [self.describe(t) for t in ty.elements])
        if isinstance(ty, wc.VariantType):
            return ("variant", [(n, None if t is None else self.describe(t)) for n, t in ty.cases])
        if isinstance(ty, wc.EnumType):
            return ("enum", ty.names)
        if isinstance(ty, wc.OptionType):
            return ("option", self.describe(ty.payload))
        if isinstance(ty, wc.ResultType):
            ok, err = ty.ok, ty.err
            return ("result", None if ok is None else self.describe(ok), None if err is None else self.describe(err))
        if isinstance(ty, wc.FlagsType):
            return ("flags", ty.names)
        if isinstance(ty, (wc.OwnType, wc.BorrowType)):
            return ("own" if isinstance(ty, wc.OwnType) else "borrow", self.res.type_id(ty.ty))
        raise ComponentError(f"the reference engine cannot convert values of type {type(ty).__name__}")

    # -- wasmtime value -> plain value ---------------------------------------------------------
    def lift(self, d: tuple, c: Any) -> Any:
        k = d[0]
        if k in _FIELD:
            v = getattr(c.of, _FIELD[k])
            return bool(v) if k == "bool" else v
        if k == "char":
            return chr(c.of.character)
        if k == "string":
            return ffi.to_str(c.of.string)
        if k == "list":
            lst = c.of.list
            if d[1][0] == "u8":
                n = lst.size
                if n == 0:
                    return b""
                stride = ctypes.sizeof(ffi.wasmtime_component_val_t)
                return ctypes.string_at(lst.data, n * stride)[_U8_OFFSET::stride]
            return [self.lift(d[1], lst.data[i]) for i in range(lst.size)]
        if k == "record":
            rec = c.of.record
            return {name: self.lift(fd, rec.data[i].val) for i, (name, fd) in enumerate(d[1])}
        if k == "tuple":
            tup = c.of.tuple
            return tuple(self.lift(ed, tup.data[i]) for i, ed in enumerate(d[1]))
        if k == "variant":
            tag = ffi.to_str(c.of.variant.discriminant)
            for name, pd in d[1]:
                if name == tag:
                    return Variant(tag, None if pd is None else self.lift(pd, c.of.variant.val.contents))
            raise ComponentError(f"unknown variant case {tag}")
        if k == "enum":
            return ffi.to_str(c.of.enumeration)
        if k == "option":
            if not c.of.option:
                return None
            v = self.lift(d[1], c.of.option.contents)
            return Some(v) if _can_be_none(d[1]) else v
        if k == "result":
            r = c.of.result
            pd = d[1] if r.is_ok else d[2]
            v = None if pd is None else self.lift(pd, r.val.contents)
            return Ok(v) if r.is_ok else Err(v)
        if k == "flags":
            fl = c.of.flags
            return {ffi.to_str(fl.data[i]) for i in range(fl.size)}
        if k in ("own", "borrow"):
            # the handle stays owned by wasmtime's argument array: taking it would end the borrow early
            try:
                rep = capi.resource_rep(self.store, c.of.resource)
            except wasmtime.WasmtimeError:
                raise Trap("guest resources cannot be passed to host functions on the reference engine")
            if k == "own":
                return self.res.objects.pop(rep)
            return self.res.objects[rep]
        raise ComponentError(f"cannot lift {k}")

    # -- plain value -> wasmtime value (fills *ptr) -------------------------------------------
    def lower(self, d: tuple, v: Any, c: Any) -> None:
        k = d[0]
        if k in _KIND:
            c.kind = _KIND[k]
            if k in ("f32", "f64"):
                v = float(v)
            setattr(c.of, _FIELD[k], v)
            return
        if k == "char":
            c.kind = ffi.WASMTIME_COMPONENT_CHAR
            c.of.character = ord(v)
            return
        if k == "string":
            c.kind = ffi.WASMTIME_COMPONENT_STRING
            c.of.string = ffi.str_to_capi(v)
            return
        if k == "list":
            raw = ffi.wasmtime_component_vallist_t()
            if d[1][0] == "u8":
                list_length(v, 1)  # refuse what no guest memory could hold before building it
                data = bytes(v)
                n = len(data)
                ffi.wasmtime_component_vallist_new_uninit(raw, n)
                if n:
                    stride = ctypes.sizeof(ffi.wasmtime_component_val_t)
                    block = bytearray(n * stride)
                    block[0::stride] = bytes([ffi.WASMTIME_COMPONENT_U8.value]) * n
                    block[_U8_OFFSET::stride] = data
                    ctypes.memmove(raw.data, bytes(block), len(block))
            else:
                items = list(v)
                ffi.wasmtime_component_vallist_new_uninit(raw, len(items))
                for i, item in enumerate(items):
                    self.lower(d[1], item, raw.data[i])
            c.kind = ffi.WASMTIME_COMPONENT_LIST
            c.of.list = raw
            return
        if k == "record":
            raw = ffi.wasmtime_component_valrecord_t()
            ffi.wasmtime_component_valrecord_new_uninit(raw, len(d[1]))
            for i, (name, fd) in enumerate(d[1]):
                raw.data[i].name = ffi.str_to_capi(name)
                self.lower(fd, v[name], raw.data[i].val)
            c.kind = ffi.WASMTIME_COMPONENT_RECORD
            c.of.record = raw
            return
        if k == "tuple":
            raw = ffi.wasmtime_component_valtuple_t()
            ffi.wasmtime_component_valtuple_new_uninit(raw, len(d[1]))
            for i, (ed, item) in enumerate(zip(d[1], v)):
                self.lower(ed, item, raw.data[i])
            c.kind = ffi.WASMTIME_COMPONENT_TUPLE
            c.of.tuple = raw
            return
        if k == "variant":
            case, payload = (v.case, v.value) if isinstance(v, Variant) else (v, None)
            for name, pd in d[1]:
                if name == case:
                    c.kind = ffi.WASMTIME_COMPONENT_VARIANT
                    c.of.variant.discriminant = ffi.str_to_capi(name)
                    c.of.variant.val = self._boxed(pd, payload)
                    return
            raise Trap(f"host returned unknown variant case {case!r}")
        if k == "enum":
            if v not in d[1]:
                raise Trap(f"host returned unknown enum case {v!r}")
            c.kind = ffi.WASMTIME_COMPONENT_ENUM
            c.of.enumeration = ffi.str_to_capi(v)
            return
        if k == "option":
            c.kind = ffi.WASMTIME_COMPONENT_OPTION
            if v is None:
                c.of.option = None
            else:
                c.of.option = self._boxed(d[1], v.value if isinstance(v, Some) else v)
            return
        if k == "result":
            if isinstance(v, Err):
                is_ok, pd, payload = False, d[2], v.value
            else:
                is_ok, pd, payload = True, d[1], (v.value if isinstance(v, Ok) else v)
            c.kind = ffi.WASMTIME_COMPONENT_RESULT
            c.of.result.is_ok = is_ok
            c.of.result.val = self._boxed(pd, payload)
            return
        if k == "flags":
            names = [n for n in d[1] if n in v]
            raw = ffi.wasmtime_component_valflags_t()
            ffi.wasmtime_component_valflags_new_uninit(raw, len(names))
            for i, n in enumerate(names):
                raw.data[i] = ffi.str_to_capi(n)
            c.kind = ffi.WASMTIME_COMPONENT_FLAGS
            c.of.flags = raw
            return
        if k in ("own", "borrow"):
            if d[1] is None:
                raise Trap("the reference engine cannot hand guest resources back")
            rep = next(self.res._reps)
            self.res.objects[rep] = v
            host = wc.ResourceHost.own(rep, d[1]) if k == "own" else wc.ResourceHost.borrow(rep, d[1])
            c.kind = ffi.WASMTIME_COMPONENT_RESOURCE
            c.of.resource = capi.resource_to_raw(self.store, host)
            return
        raise ComponentError(f"cannot lower {k}")

    def _boxed(self, d: tuple | None, v: Any) -> Any:
        if d is None:
            return None
        tmp = ffi.wasmtime_component_val_t()
        self.lower(d, v, tmp)
        return ffi.wasmtime_component_val_new(byref(tmp))


_U8_OFFSET = ffi.wasmtime_component_val.of.offset + ffi.wasmtime_component_valunion.u8.offset


class ReferenceBackend(Backend):
    name = "reference"

    def __init__(self) -> None:
        self.wasmtime_engine = wasmtime.Engine()

    def load(self, wasm: bytes | WasmFile, *, cache: CompileCache, progress=None) -> "ReferenceComponent":
        path = cache.path_for(wasm, "component", f"wt{WASMTIME_VERSION}")
        compiled = cache.load_compiled(path, lambda file: wc.Component.deserialize_file(self.wasmtime_engine, file))
        if compiled is not None:
            return ReferenceComponent(self, compiled)
        if isinstance(wasm, WasmFile):
            wasm = wasm.read()
        if wasm[:4] != b"\0asm":
            raise ComponentError("not a WebAssembly file (no \\0asm header)")
        if wasm[4:8] != b"\x0d\x00\x01\x00":
            raise ComponentError("a core WebAssembly module, not a component (wasitls runs WASI 0.2 components)")
        if progress and len(wasm) > _LARGE:
            progress(f"compiling component ({len(wasm) / 1e6:.0f} MB, first run only)...")
        try:
            comp = cc.interruptible(wc.Component, self.wasmtime_engine, wasm)
        except wasmtime.WasmtimeError as e:
            raise ComponentError("invalid component: " + str(e).strip().splitlines()[0]) from None
        cache.store(path, bytes(comp.serialize()))
        return ReferenceComponent(self, comp)


class ReferenceComponent(LoadedComponent):
    def __init__(self, backend: ReferenceBackend, comp: wc.Component):
        self.backend = backend
        self.comp = comp
        self._imports = comp.type.imports(backend.wasmtime_engine)

    def imported_instances(self) -> list[str]:
        return list(self._imports)

    def exported_interfaces(self) -> list[str]:
        exports = self.comp.type.exports(self.backend.wasmtime_engine)
        return [name for name, ext in exports.items() if isinstance(ext.ty, wc.ComponentInstanceType)]

    def instantiate(self, linker: linking.HostLinker) -> "ReferenceInstance":
        wasmtime_engine = self.backend.wasmtime_engine
        store = wasmtime.Store(wasmtime_engine)
        res = _Resources()
        conv = _Converter(store, res)
        inst = ReferenceInstance(store, conv)
        wl = wc.Linker(wasmtime_engine)
        missing: list[str] = []
        plan = []
        for name, ext in self._imports.items():
            ty = ext.ty
            impl = linker.resolve(name)
            if impl is None or not isinstance(ty, wc.ComponentInstanceType):
                missing.append(name)
                continue
            items = []
            for item_name, item in ty.exports(wasmtime_engine).items():
                it = item.ty
                if isinstance(it, wc.FuncType):
                    if sum(_borrows(t) for _, t in it.params) >= 2:
                        inst.two_borrow_imports.append(f"{name}#{item_name}")
                    fn = linking.host_function(impl, item_name)
                    if fn is None:
                        missing.append(f"{name}#{item_name}")
                    items.append(("func", item_name, fn))
                elif isinstance(it, wc.ResourceType) and linking.resource_class(impl, item_name) is not None:
                    # resources the interface only `use`s from another are not ours to define here
                    items.append(("resource", item_name, None))
            plan.append((name, items))
        if missing:
            raise UnservedImports(missing)
        tids = itertools.count(1)
        with wl.root() as root:
            for name, items in plan:
                with root.add_instance(name) as li:
                    for kind, item_name, fn in items:
                        if kind == "resource":
                            tid = next(tids)
                            rtype = wc.ResourceType.host(tid)
                            res.types.append((rtype, tid))
                            li.add_resource(item_name, rtype, inst._dtor)
                    for kind, item_name, fn in items:
                        if kind == "func":
                            inst._add_func(li, f"{name}#{item_name}", fn)
        try:
            inst.instance = wl.instantiate(store, self.comp)
        except wasmtime.WasmtimeError as e:
            inst._reraise_pending()
            text = str(e)
            if "wasm trap" in text or "wasm backtrace" in text:
                raise GuestTrap(inst.trap_text(text)) from None
            raise ComponentError("cannot link component: " + " ".join(text.split())) from None
        inst._exports = self.comp.type.exports(wasmtime_engine)
        inst._linker = wl  # the linker holds the host functions: it lives as long as the instance
        return inst


class ReferenceInstance(ComponentInstance):
    def __init__(self, store: wasmtime.Store, conv: _Converter):
        self.store = store
        self.conv = conv
        self.instance: wc.Instance | None = None
        self._pending: BaseException | None = None
        self._callbacks: list[Any] = []
        self.two_borrow_imports: list[str] = []  # imported functions wasmtime 50 cannot call (see _TWO_BORROW_BUG)

    def trap_text(self, text: str) -> str:
        """The line for a trap wasmtime reported."""
        if _TWO_BORROW_BUG in text:
            return _two_borrow_line(text, self.two_borrow_imports)
        return trap_line(text)

    # -- host functions ---------------------------------------------------------------------
    def _add_func(self, li: wc.LinkerInstance, label: str, fn: Any) -> None:
        conv = self.conv
        plan: list[Any] = []

        def callback(_env, _ctx, ty_raw, args, nargs, results, nresults):
            try:
                if not plan:
                    fty = capi.component_functype(ty_raw, self)
                    plan.append(([conv.describe(t) for _, t in fty.params],
                                 None if fty.result is None else conv.describe(fty.result)))
                params, result = plan[0]
                pyargs = [conv.lift(d, args[i]) for i, d in enumerate(params)]
                try:
                    out = fn(*pyargs)
                except Err as e:
                    if result is None or result[0] != "result":
                        raise Trap(f"{label} raised an error value but returns no result") from None
                    out = e
                if result is not None:
                    conv.lower(result, out, results[0])
                return 0
            except BaseException as e:  # anything else becomes a trap; exit and Ctrl-C are re-raised later
                if not isinstance(e, (Trap, GuestExit, KeyboardInterrupt)):
                    e = Trap(f"host error in {label}: {type(e).__name__}: {e}")
                self._pending = e
                msg = str(e) if not isinstance(e, GuestExit) else f"exit {e.status}"
                return capi.error_pointer(msg)

        cb = ffi.wasmtime_component_func_callback_t(callback)
        self._callbacks.append(cb)
        capi.add_component_func(li, label.split("#", 1)[1], cb)

    def _dtor(self, _store: Any, rep: int) -> None:
        obj = self.conv.res.objects.pop(rep, None)
        if obj is not None:
            linking.drop_object(obj)

    def _reraise_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and not isinstance(pending, Trap):
            raise pending

    # -- exports ------------------------------------------------------------------------------
    def _find(self, interface: str | None, func: str) -> wc.Func:
        assert self.instance is not None
        parent = None
        if interface is not None:
            name = interface
            if name not in self._exports:
                base = linking.split_name(interface)[0]
                name = next((n for n in self._exports if linking.split_name(n)[0] == base), interface)
            parent = self.instance.get_export_index(self.store, name)
            if parent is None:
                raise ComponentError(f"component does not export {interface}")
        idx = self.instance.get_export_index(self.store, func, parent)
        f = None if idx is None else self.instance.get_func(self.store, idx)
        if f is None:
            raise ComponentError(f"component does not export {interface or ''}#{func}")
        return f

    def call(self, interface: str | None, func: str, *args: Any) -> Any:
        f = self._find(interface, func)
        fty = f.type(self.store)
        params = [self.conv.describe(t) for _, t in fty.params]
        result = None if fty.result is None else self.conv.describe(fty.result)
        cargs = (ffi.wasmtime_component_val_t * max(1, len(params)))()
        for i, (d, a) in enumerate(zip(params, args)):
            self.conv.lower(d, a, cargs[i])
        out = ffi.wasmtime_component_val_t()
        failed = capi.call_component_func(f, self.store, cargs, len(params), out if result else None)
        if failed is not None:
            self._reraise_pending()
            raise GuestTrap(self.trap_text(failed))
        value = self.conv.lift(result, out) if result else None
        if result:
            ffi.wasmtime_component_val_delete(byref(out))
        f.post_return(self.store)
        return value
