"""The parser of the component binary format (design/mvp/Binary.md) into `binary`'s definitions.

Imported only when a component is parsed: a start whose compile-cache index answers never needs it.
"""

from __future__ import annotations

from .binary import (COMPONENT_VERSION, MAGIC, MAX_NESTING, Alias, AliasCoreExport, AliasExport, AliasOuter,
                     BorrowDef, CanonLift, CanonLower, CanonOptions, CanonResourceDrop, CanonResourceNew,
                     CanonResourceRep, Component, ComponentTypeDef, CoreFuncType, CoreInlineExports,
                     CoreInstantiate, CoreModule, CoreModuleType, CoreTypeDef, DeclAlias, DeclCoreType,
                     DeclExport, DeclImport, DeclType, EnumDef, Export, ExternType, FlagsDef, FuncTypeDef,
                     Import, InlineExports, Instantiate, InstanceTypeDef, ListDef, OptionDef, OwnDef, PrimDef,
                     RecordDef, ResourceDef, ResultDef, TupleDef, TypeDef, ValTypeRef, VariantDef)
from .binary import Unsupported
from .errors import ComponentError

# -- encodings ----------------------------------------------------------------------------------


_CORE_SORTS = {0x00: "core func", 0x01: "core table", 0x02: "core memory", 0x03: "core global",
               0x04: "core tag", 0x10: "core type", 0x11: "core module", 0x12: "core instance"}
_SORTS = {0x01: "func", 0x02: "value", 0x03: "type", 0x04: "component", 0x05: "instance"}
_PRIMS = {0x7F: "bool", 0x7E: "s8", 0x7D: "u8", 0x7C: "s16", 0x7B: "u16", 0x7A: "s32", 0x79: "u32",
          0x78: "s64", 0x77: "u64", 0x76: "f32", 0x75: "f64", 0x74: "char", 0x73: "string"}
_CORE_VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128",
                  0x70: "funcref", 0x6F: "externref"}
_STRING_ENCODINGS = {0x00: "utf8", 0x01: "utf16", 0x02: "latin1+utf16"}

# canon opcodes of the async ABI, error-context and threads: named so the rejection says what it met
_UNSUPPORTED_CANON = {
    0x05: "task.cancel", 0x06: "subtask.cancel", 0x09: "task.return", 0x0A: "context.get",
    0x0B: "context.set", 0x0C: "thread.yield", 0x0D: "subtask.drop", 0x0E: "stream.new",
    0x0F: "stream.read", 0x10: "stream.write", 0x11: "stream.cancel-read", 0x12: "stream.cancel-write",
    0x13: "stream.drop-readable", 0x14: "stream.drop-writable", 0x15: "future.new", 0x16: "future.read",
    0x17: "future.write", 0x18: "future.cancel-read", 0x19: "future.cancel-write",
    0x1A: "future.drop-readable", 0x1B: "future.drop-writable", 0x1C: "error-context.new",
    0x1D: "error-context.debug-message", 0x1E: "error-context.drop", 0x1F: "waitable-set.new",
    0x20: "waitable-set.wait", 0x21: "waitable-set.poll", 0x22: "waitable-set.drop",
    0x23: "waitable.join", 0x24: "backpressure.inc", 0x25: "backpressure.dec", 0x26: "thread.index",
    0x27: "thread.new-indirect", 0x28: "thread.resume-later", 0x29: "thread.suspend",
    0x2A: "thread.suspend-then-resume", 0x2B: "thread.yield-then-resume",
    0x2C: "thread.suspend-then-promote", 0x2D: "thread.yield-then-promote",
    0x40: "thread.spawn-ref (shared-everything threads)", 0x41: "thread.spawn-indirect (shared-everything threads)",
    0x42: "thread.available-parallelism (shared-everything threads)",
}


class _Reader:
    __slots__ = ("data", "pos", "end", "where")

    def __init__(self, data: bytes, pos: int, end: int, where: str):
        self.data = data
        self.pos = pos
        self.end = end
        self.where = where

    def fail(self, what: str, at: int | None = None) -> ComponentError:
        at = self.pos if at is None else at
        return ComponentError(f"invalid component: {what} at byte offset {at:#x}{self.where}")

    def unsupported(self, feature: str, at: int) -> ComponentError:
        return Unsupported(f"unsupported component feature: {feature} at byte offset {at:#x}{self.where}")

    def byte(self) -> int:
        if self.pos >= self.end:
            raise self.fail("unexpected end")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def peek(self) -> int:
        if self.pos >= self.end:
            raise self.fail("unexpected end")
        return self.data[self.pos]

    def u32(self) -> int:
        data, pos = self.data, self.pos
        result = shift = 0
        while True:
            if pos >= self.end:
                raise self.fail("unexpected end in LEB128")
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift > 63:
                raise self.fail("LEB128 too long")
        self.pos = pos
        return result

    def s33(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        if b & 0x40:
            result -= 1 << shift
        return result

    def bytes_(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise self.fail("unexpected end")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return bytes(b)

    def name(self) -> str:
        n = self.u32()
        at = self.pos
        try:
            return self.bytes_(n).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("name is not UTF-8", at) from None

    def vec(self, item) -> list:
        return [item() for _ in range(self.u32())]


# -- the parser ---------------------------------------------------------------------------------


def parse(wasm: bytes) -> Component:
    """Parses a whole component binary; raises ComponentError with one line on anything wrong."""
    if wasm[:4] != MAGIC:
        raise ComponentError("not a WebAssembly file (no \\0asm header)")
    if wasm[4:8] != COMPONENT_VERSION:
        if wasm[4:8] == b"\x01\x00\x00\x00":
            raise ComponentError("a core WebAssembly module, not a component (wasitls runs WASI 0.2 components)")
        raise ComponentError(f"unsupported component binary version {wasm[4:8].hex()}")
    data = memoryview(wasm) if not isinstance(wasm, memoryview) else wasm
    return _Parser(bytes(data)).component(8, len(wasm), 0, "")


class _Parser:
    def __init__(self, data: bytes):
        self.data = data
        self.nested = 0
        self.level = 0  # how many nested components and types enclose the current position

    def enter(self, r: _Reader, at: int) -> None:
        if self.level >= MAX_NESTING:
            # without `r.where`: at this depth it would name a hundred enclosing components
            raise Unsupported(f"unsupported component feature: components or types nested more than "
                              f"{MAX_NESTING} deep (at byte offset {at:#x})")
        self.level += 1

    def component(self, pos: int, end: int, depth: int, where: str) -> Component:
        comp = Component(offset=pos - 8, depth=depth)
        defs = comp.definitions
        data = self.data
        while pos < end:
            r = _Reader(data, pos, end, where)
            section_id = r.byte()
            size = r.u32()
            start = r.pos
            stop = start + size
            if stop > end:
                raise r.fail("section runs past the end", start)
            r = _Reader(data, start, stop, where)
            if section_id == 0:
                r.pos = stop  # custom section: names and producers, nothing to run
            elif section_id == 1:
                if data[start:start + 4] != MAGIC or data[start + 4:start + 8] != b"\x01\x00\x00\x00":
                    raise r.fail("core module section without a core module header", start)
                defs.append(CoreModule(data[start:stop], start))
                r.pos = stop
            elif section_id == 2:
                defs.extend(r.vec(lambda: self.core_instance(r)))
            elif section_id == 3:
                defs.extend(r.vec(lambda: CoreTypeDef(self.core_type(r))))
            elif section_id == 4:
                if data[start:start + 4] != MAGIC or data[start + 4:start + 8] != COMPONENT_VERSION:
                    raise r.fail("nested component without a component header", start)
                self.nested += 1
                inner_where = f" (in nested component #{self.nested}){where}"
                self.enter(r, start)
                defs.append(self.component(start + 8, stop, depth + 1, inner_where))
                self.level -= 1
                r.pos = stop
            elif section_id == 5:
                defs.extend(r.vec(lambda: self.instance(r)))
            elif section_id == 6:
                defs.extend(r.vec(lambda: self.alias(r)))
            elif section_id == 7:
                defs.extend(r.vec(lambda: TypeDef(self.deftype(r))))
            elif section_id == 8:
                defs.extend(r.vec(lambda: self.canon(r)))
            elif section_id == 9:
                raise r.unsupported("start function (component value definitions)", start)
            elif section_id == 10:
                defs.extend(r.vec(lambda: self.import_(r)))
            elif section_id == 11:
                defs.extend(r.vec(lambda: self.export(r)))
            elif section_id == 12:
                raise r.unsupported("value definitions", start)
            else:
                raise r.fail(f"unknown section id {section_id}", start - 1)
            if r.pos != stop:
                raise r.fail(f"section {section_id} has {stop - r.pos} bytes left over", r.pos)
            pos = stop
        return comp

    # -- sorts and names --------------------------------------------------------------------

    def core_sort(self, r: _Reader) -> str:
        at = r.pos
        b = r.byte()
        if b not in _CORE_SORTS:
            raise r.fail(f"unknown core sort {b:#x}", at)
        return _CORE_SORTS[b]

    def sort(self, r: _Reader) -> str:
        at = r.pos
        b = r.byte()
        if b == 0x00:
            return self.core_sort(r)
        if b not in _SORTS:
            raise r.fail(f"unknown sort {b:#x}", at)
        if b == 0x02:
            raise r.unsupported("component values", at)
        return _SORTS[b]

    def extern_name(self, r: _Reader) -> str:
        at = r.pos
        kind = r.byte()
        if kind in (0x00, 0x01):
            return r.name()
        if kind == 0x02:
            name = r.name()
            for _ in range(r.u32()):  # attributes (implements, versionsuffix, external-id) are ignored
                r.byte()
                r.name()
            return name
        raise r.fail(f"unknown name encoding {kind:#x}", at)

    # -- instances and aliases --------------------------------------------------------------

    def core_instance(self, r: _Reader):
        at = r.pos
        kind = r.byte()
        if kind == 0x00:
            module = r.u32()

            def arg():
                name = r.name()
                if r.byte() != 0x12:
                    raise r.fail("core instantiate argument is not an instance")
                return (name, r.u32())

            return CoreInstantiate(module, r.vec(arg))
        if kind == 0x01:
            return CoreInlineExports(r.vec(lambda: (r.name(), self.core_sort(r), r.u32())))
        raise r.fail(f"unknown core instance kind {kind:#x}", at)

    def instance(self, r: _Reader):
        at = r.pos
        kind = r.byte()
        if kind == 0x00:
            comp = r.u32()
            return Instantiate(comp, r.vec(lambda: (r.name(), self.sort(r), r.u32())))
        if kind == 0x01:
            return InlineExports(r.vec(lambda: (self.extern_name(r), self.sort(r), r.u32())))
        raise r.fail(f"unknown instance kind {kind:#x}", at)

    def alias(self, r: _Reader) -> Alias:
        sort = self.sort(r)
        at = r.pos
        kind = r.byte()
        if kind == 0x00:
            return AliasExport(sort, r.u32(), r.name())
        if kind == 0x01:
            return AliasCoreExport(sort, r.u32(), r.name())
        if kind == 0x02:
            return AliasOuter(sort, r.u32(), r.u32())
        raise r.fail(f"unknown alias kind {kind:#x}", at)

    # -- core types ---------------------------------------------------------------------------

    def core_valtype(self, r: _Reader) -> str:
        at = r.pos
        b = r.byte()
        if b in _CORE_VALTYPES:
            return _CORE_VALTYPES[b]
        if b in (0x63, 0x64):  # (ref null? ht)
            r.s33()
            return "ref"
        if 0x69 <= b <= 0x74:  # abstract heap type shorthands of GC and exceptions
            return "ref"
        raise r.fail(f"unknown core value type {b:#x}", at)

    def core_functype_body(self, r: _Reader) -> CoreFuncType:
        params = tuple(r.vec(lambda: self.core_valtype(r)))
        results = tuple(r.vec(lambda: self.core_valtype(r)))
        return CoreFuncType(params, results)

    def core_comptype(self, r: _Reader):
        at = r.pos
        b = r.byte()
        if b == 0x60:
            return self.core_functype_body(r)
        if b == 0x5F:  # struct
            r.vec(lambda: (self.core_storagetype(r), r.byte()))
            return None
        if b == 0x5E:  # array
            self.core_storagetype(r)
            r.byte()
            return None
        raise r.fail(f"unknown core composite type {b:#x}", at)

    def core_storagetype(self, r: _Reader) -> str:
        if r.peek() in (0x78, 0x77):  # i8, i16
            r.byte()
            return "packed"
        return self.core_valtype(r)

    def core_subtype(self, r: _Reader):
        b = r.peek()
        if b in (0x50, 0x4F):
            r.byte()
            r.vec(r.u32)
        return self.core_comptype(r)

    def core_type(self, r: _Reader):
        at = r.pos
        b = r.peek()
        if b == 0x50:
            r.byte()
            self.enter(r, at)
            t = CoreModuleType(r.vec(lambda: self.core_moduledecl(r)))
            self.level -= 1
            return t
        if b == 0x00:
            r.byte()
            if r.byte() != 0x50:
                raise r.fail("expected a non-final core sub type", at)
            r.vec(r.u32)
            self.core_comptype(r)
            return None
        if b == 0x4E:  # rec group
            r.byte()
            r.vec(lambda: self.core_subtype(r))
            return None
        if b == 0x4F:
            return self.core_subtype(r)
        return self.core_comptype(r)

    def core_limits(self, r: _Reader) -> None:
        flags = r.byte()
        r.u32()
        if flags & 0x01:
            r.u32()
        if flags & 0x08:  # custom page size
            r.u32()

    def core_externtype(self, r: _Reader):
        at = r.pos
        kind = r.byte()
        if kind == 0x00:
            return ("func", r.u32())
        if kind == 0x01:
            self.core_valtype(r)
            self.core_limits(r)
            return ("table", None)
        if kind == 0x02:
            self.core_limits(r)
            return ("memory", None)
        if kind == 0x03:
            self.core_valtype(r)
            r.byte()
            return ("global", None)
        if kind == 0x04:
            r.byte()
            return ("tag", r.u32())
        raise r.fail(f"unknown core extern type {kind:#x}", at)

    def core_moduledecl(self, r: _Reader):
        at = r.pos
        kind = r.byte()
        if kind == 0x00:
            return ("import", r.name(), r.name(), self.core_externtype(r))
        if kind == 0x01:
            return ("type", self.core_type(r))
        if kind == 0x02:
            if r.byte() != 0x10 or r.byte() != 0x01:
                raise r.fail("unknown core alias in module type", at)
            return ("alias", r.u32(), r.u32())
        if kind == 0x03:
            return ("export", r.name(), self.core_externtype(r))
        raise r.fail(f"unknown module type declaration {kind:#x}", at)

    # -- component types ----------------------------------------------------------------------

    def valtype(self, r: _Reader) -> ValTypeRef:
        at = r.pos
        b = r.peek()
        if b in _PRIMS:
            r.byte()
            return _PRIMS[b]
        if b == 0x64:
            raise r.unsupported("error-context type", at)
        if 0x40 <= b < 0x80:  # a negative s33 that names no primitive
            raise r.fail(f"unknown value type {b:#x}", at)
        return r.u32()

    def opt_valtype(self, r: _Reader) -> ValTypeRef | None:
        at = r.pos
        b = r.byte()
        if b == 0x00:
            return None
        if b == 0x01:
            return self.valtype(r)
        raise r.fail(f"bad optional value type marker {b:#x}", at)

    def labels(self, r: _Reader) -> list[str]:
        return r.vec(r.name)

    def deftype(self, r: _Reader):
        at = r.pos
        b = r.byte()
        if b in _PRIMS:
            return PrimDef(_PRIMS[b])
        if b == 0x72:
            return RecordDef(r.vec(lambda: (r.name(), self.valtype(r))))
        if b == 0x71:
            def case():
                label = r.name()
                t = self.opt_valtype(r)
                if r.byte() != 0x00:
                    raise r.fail("variant case refinements are not supported")
                return (label, t)
            return VariantDef(r.vec(case))
        if b == 0x70:
            return ListDef(self.valtype(r))
        if b == 0x67:
            t = self.valtype(r)
            return ListDef(t, r.u32())
        if b == 0x6F:
            return TupleDef(r.vec(lambda: self.valtype(r)))
        if b == 0x6E:
            return FlagsDef(self.labels(r))
        if b == 0x6D:
            return EnumDef(self.labels(r))
        if b == 0x6B:
            return OptionDef(self.valtype(r))
        if b == 0x6A:
            return ResultDef(self.opt_valtype(r), self.opt_valtype(r))
        if b == 0x69:
            return OwnDef(r.u32())
        if b == 0x68:
            return BorrowDef(r.u32())
        if b == 0x66:
            raise r.unsupported("stream type (async ABI)", at)
        if b == 0x65:
            raise r.unsupported("future type (async ABI)", at)
        if b == 0x64:
            raise r.unsupported("error-context type", at)
        if b == 0x63:
            raise r.unsupported("map type", at)
        if b in (0x40, 0x43):
            if b == 0x43:
                raise r.unsupported("async function type (async ABI)", at)
            params = r.vec(lambda: (r.name(), self.valtype(r)))
            kind = r.byte()
            if kind == 0x00:
                result = self.valtype(r)
            elif kind == 0x01:
                if r.byte() != 0x00:
                    raise r.fail("named function results are not supported")
                result = None
            else:
                raise r.fail(f"bad function result list {kind:#x}")
            return FuncTypeDef(params, result)
        if b == 0x41:
            self.enter(r, at)
            t = ComponentTypeDef(r.vec(lambda: self.componentdecl(r)))
            self.level -= 1
            return t
        if b == 0x42:
            self.enter(r, at)
            t = InstanceTypeDef(r.vec(lambda: self.instancedecl(r)))
            self.level -= 1
            return t
        if b == 0x3F:
            rep = self.core_valtype(r)
            dtor = None
            flag = r.byte()
            if flag == 0x01:
                dtor = r.u32()
            elif flag != 0x00:
                raise r.fail("bad resource destructor marker")
            return ResourceDef(rep, dtor)
        if b == 0x3E:
            raise r.unsupported("async resource destructor (async ABI)", at)
        raise r.fail(f"unknown type definition {b:#x}", at)

    def externtype(self, r: _Reader) -> ExternType:
        at = r.pos
        kind = r.byte()
        if kind == 0x00:
            if r.byte() != 0x11:
                raise r.fail("core extern type other than a module", at)
            return ExternType("core module", r.u32())
        if kind == 0x01:
            return ExternType("func", r.u32())
        if kind == 0x02:
            raise r.unsupported("component values", at)
        if kind == 0x03:
            bound = r.byte()
            if bound == 0x00:
                return ExternType("type", r.u32())
            if bound == 0x01:
                return ExternType("type", None)
            raise r.fail(f"unknown type bound {bound:#x}", at)
        if kind == 0x04:
            return ExternType("component", r.u32())
        if kind == 0x05:
            return ExternType("instance", r.u32())
        raise r.fail(f"unknown extern type {kind:#x}", at)

    def instancedecl(self, r: _Reader):
        at = r.pos
        kind = r.byte()
        if kind == 0x00:
            return DeclCoreType(CoreTypeDef(self.core_type(r)))
        if kind == 0x01:
            return DeclType(self.deftype(r))
        if kind == 0x02:
            return DeclAlias(self.alias(r))
        if kind == 0x04:
            return DeclExport(self.extern_name(r), self.externtype(r))
        raise r.fail(f"unknown instance type declaration {kind:#x}", at)

    def componentdecl(self, r: _Reader):
        if r.peek() == 0x03:
            r.byte()
            return DeclImport(self.extern_name(r), self.externtype(r))
        return self.instancedecl(r)

    # -- canonical definitions ----------------------------------------------------------------

    def canon_options(self, r: _Reader) -> CanonOptions:
        opts = CanonOptions()
        for _ in range(r.u32()):
            at = r.pos
            b = r.byte()
            if b in _STRING_ENCODINGS:
                opts.string_encoding = _STRING_ENCODINGS[b]
            elif b == 0x03:
                opts.memory = r.u32()
            elif b == 0x04:
                opts.realloc = r.u32()
            elif b == 0x05:
                opts.post_return = r.u32()
            elif b == 0x06:
                raise r.unsupported("async canonical option (async ABI)", at)
            elif b == 0x07:
                raise r.unsupported("callback canonical option (async ABI)", at)
            else:
                raise r.fail(f"unknown canonical option {b:#x}", at)
        return opts

    def canon(self, r: _Reader):
        at = r.pos
        b = r.byte()
        if b == 0x00:
            if r.byte() != 0x00:
                raise r.fail("canon lift of something other than a core func", at)
            f = r.u32()
            opts = self.canon_options(r)
            return CanonLift(f, opts, r.u32())
        if b == 0x01:
            if r.byte() != 0x00:
                raise r.fail("canon lower of something other than a func", at)
            f = r.u32()
            return CanonLower(f, self.canon_options(r))
        if b == 0x02:
            return CanonResourceNew(r.u32())
        if b == 0x03:
            return CanonResourceDrop(r.u32())
        if b == 0x07:
            raise r.unsupported("canon resource.drop async (async ABI)", at)
        if b == 0x04:
            return CanonResourceRep(r.u32())
        if b in _UNSUPPORTED_CANON:
            raise r.unsupported(f"canon {_UNSUPPORTED_CANON[b]}", at)
        raise r.fail(f"unknown canonical definition {b:#x}", at)

    # -- imports and exports ------------------------------------------------------------------

    def import_(self, r: _Reader) -> Import:
        return Import(self.extern_name(r), self.externtype(r))

    def export(self, r: _Reader) -> Export:
        name = self.extern_name(r)
        sort = self.sort(r)
        index = r.u32()
        at = r.pos
        flag = r.byte()
        extern = None
        if flag == 0x01:
            extern = self.externtype(r)
        elif flag != 0x00:
            raise r.fail("bad export type marker", at)
        return Export(name, sort, index, extern)
