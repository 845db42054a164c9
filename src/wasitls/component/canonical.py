"""The canonical ABI (design/mvp/CanonicalABI.md): component values to and from core values and memory.

For every type, four small functions are built once, when the component is linked (`Plan`):

    lift(cx, vals, i)      the value whose flattened core values start at vals[i]
    load(cx, mv, ptr)      the value stored at ptr in linear memory (mv: a memoryview of all of it)
    lower(cx, v, out, i)   writes v's flattened core values into out[i:]
    store(cx, v, ptr)      writes v at ptr (cx.mv is the current view; allocation refreshes it)

Core values are carried as raw bits in Python ints, as they sit in wasmtime's value slots: i32 and
f32 in the low 32 bits, i64 and f64 in 64. A variant's joined slot then needs no coercion: a payload
writes its own bits, and a lift masks to the width it wants (CanonicalABI.md, "Flat Lifting").

`Context` is one `canon lift` or `canon lower` definition's options together with its component
instance's handle table. `lower_adapter` and `LiftedCall` put the pieces together into what the
runtime calls: an import's host function behind raw core slots, and an export for the host to call.

Lengths are checked before anything is allocated: a list or string the host hands a guest is
refused (a trap) past what a 32-bit memory can hold, before the guest's realloc is asked. A
`list<u8>` may also be given as a *byte producer*, an object with `__len__` and `readinto(buffer)`,
which is filled straight into guest memory once realloc has made room: a host function asked for a
guest-chosen number of bytes (random bytes) then builds nothing the guest's memory cannot receive.
"""

from __future__ import annotations

import math
import operator
import struct
import sys
from array import array
from typing import Any, Callable

from . import types as T
from .linker import drop_object
from .values import Err, GuestExit, Ok, Some, Trap, Variant

assert sys.byteorder == "little"  # scalar lists are copied as blocks of native machine words

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
UTF16_TAG = 1 << 31
CANONICAL_NAN32 = 0x7FC00000
CANONICAL_NAN64 = 0x7FF8000000000000
NAN = float("nan")

_U8 = struct.Struct("<B")
_S8 = struct.Struct("<b")
_U16 = struct.Struct("<H")
_S16 = struct.Struct("<h")
_U32 = struct.Struct("<I")
_S32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_S64 = struct.Struct("<q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_PTR_LEN = struct.Struct("<II")
_index = operator.index


# CanonicalABI.md: store_list_into_valid_range traps at byte_length >= 2**32, and a string's
# worst-case byte length past MAX_STRING_BYTE_LENGTH
MAX_LIST_BYTES = (1 << 32) - 1
MAX_STRING_BYTES = (1 << 31) - 1


def list_length(v: Any, elem_size: int) -> int:
    """len(v) for a list to be stored in guest memory; a trap if no 32-bit memory could hold it."""
    try:
        n = len(v)
    except OverflowError:  # longer than the host's sizes go: a guest-chosen u64 near 2**64
        n = None
    if n is None or n * elem_size > MAX_LIST_BYTES:
        raise trap(f"a list of {'over 2**63' if n is None else n} elements of {elem_size} bytes "
                   f"exceeds the 4 GiB a guest memory can hold")
    return n


# CanonicalABI.md: an instance's may_leave flag is cleared while the host runs its realloc or
# post-return, and every `canon lower`ed call checks it (else realloc calling an import recurses)
LEAVE_TRAP = ("cannot leave component instance: it called an import from inside its realloc or "
              "post-return (the canonical ABI's may_leave rule)")


def trap(message: str) -> Trap:
    return Trap(message)


# -- handles and resources --------------------------------------------------------------------


class Handle:
    """One entry of a handle table (CanonicalABI.md, "Resource State")."""

    __slots__ = ("resource", "rep", "own", "scope")

    def __init__(self, resource: T.ResourceType, rep: Any, own: bool, scope: "Task | None" = None):
        self.resource = resource
        self.rep = rep  # the host object for host resources, the guest's i32 for guest resources
        self.own = own
        self.scope = scope  # the call a borrow was lent for


class HandleTable:
    """A component instance's handles; index 0 is never valid."""

    __slots__ = ("entries", "free")

    def __init__(self) -> None:
        self.entries: list[Handle | None] = [None]
        self.free: list[int] = []

    def add(self, h: Handle) -> int:
        if self.free:
            i = self.free.pop()
            self.entries[i] = h
            return i
        self.entries.append(h)
        return len(self.entries) - 1

    def get(self, i: int) -> Handle:
        entries = self.entries
        if i >= len(entries) or entries[i] is None:
            raise trap(f"unknown handle index {i}")
        return entries[i]  # type: ignore[return-value]

    def remove(self, i: int) -> Handle:
        h = self.get(i)
        self.entries[i] = None
        self.free.append(i)
        return h


class Task:
    """One call into a guest export: the borrows lent to it must all be dropped before it returns."""

    __slots__ = ("num_borrows", "entered")

    def __init__(self) -> None:
        self.num_borrows = 0
        self.entered = False  # whether the guest's core function has been called


class GuestResource:
    """A guest-defined resource held by the host (an own or borrow lifted out of the guest)."""

    __slots__ = ("resource", "rep", "own", "_gone")

    def __init__(self, resource: T.ResourceType, rep: int, own: bool):
        self.resource = resource
        self.rep = rep
        self.own = own
        self._gone = False

    def _take(self) -> int:
        if self._gone:
            raise trap(f"{self.resource.name} handle was already moved or dropped")
        self._gone = True
        return self.rep

    def drop(self) -> None:
        """Drops the host's own handle: runs the guest's destructor."""
        if not self.own:
            return
        rep = self._take()
        if self.resource.dtor is not None:
            self.resource.dtor(rep)

    def __repr__(self) -> str:
        return f"<{'own' if self.own else 'borrow'} {self.resource.name} rep={self.rep}>"


def resource_new(table: HandleTable, rt: T.ResourceType, rep: int) -> int:
    return table.add(Handle(rt, rep, True))


def resource_rep(table: HandleTable, rt: T.ResourceType, i: int) -> int:
    h = table.get(i)
    if h.resource is not rt:
        raise trap(f"handle index {i} used with the wrong resource type")
    return h.rep


def resource_drop(table: HandleTable, rt: T.ResourceType, i: int) -> None:
    h = table.get(i)
    if h.resource is not rt:
        raise trap(f"handle index {i} used with the wrong resource type")
    table.remove(i)
    if not h.own:
        h.scope.num_borrows -= 1  # type: ignore[union-attr]
    elif rt.instance is None:
        drop_object(h.rep)
    elif rt.dtor is not None:
        rt.dtor(h.rep)


# -- the context of one canon definition ------------------------------------------------------


class Context:
    """Canonical options of one `canon lift`/`canon lower` plus its instance's state.

    `memory` has `view() -> memoryview`; `realloc(old, old_size, align, new_size) -> ptr` calls the
    guest. `mv` is the memory view lifting and storing use; whoever may have let the guest run since
    (a realloc, a call) refreshes it.
    """

    __slots__ = ("memory", "_realloc", "encoding", "table", "instance", "task", "mv",
                 "load_string", "store_string")

    def __init__(self, memory: Any, realloc: Callable[[int, int, int, int], int] | None, encoding: str,
                 table: HandleTable, instance: Any):
        self.memory = memory
        self._realloc = realloc
        self.encoding = encoding
        self.table = table
        self.instance = instance
        self.task: Task | None = None
        self.mv: memoryview | None = None
        self.load_string = _STRING_LOADERS[encoding]
        self.store_string = _STRING_STORERS[encoding]

    def view(self) -> memoryview:
        if self.memory is None:
            raise trap("canonical option `memory` is required for this type")
        mv = self.memory.view()
        self.mv = mv
        return mv

    def allocate(self, align: int, size: int) -> int:
        """realloc(0, 0, align, size); checks the pointer it gives and refreshes `mv`."""
        if self._realloc is None:
            raise trap("canonical option `realloc` is required for this type")
        instance = self.instance
        instance.may_leave = False  # the guest's realloc may not call out (CanonicalABI.md, may_leave)
        try:
            ptr = self._realloc(0, 0, align, size) & M32
        finally:
            instance.may_leave = True
        mv = self.view()
        if ptr & (align - 1):
            raise trap(f"realloc returned unaligned pointer {ptr:#x}")
        if ptr + size > len(mv):
            raise trap("realloc returned a pointer out of bounds")
        return ptr


def check_range(mv: memoryview, ptr: int, size: int, align: int, what: str) -> None:
    if ptr & (align - 1):
        raise trap(f"unaligned pointer {ptr:#x} for {what}")
    if ptr + size > len(mv):
        raise trap(f"{what} out of bounds of linear memory")


# -- plans: the four functions of one type ----------------------------------------------------


class Plan:
    __slots__ = ("type", "lift", "load", "lower", "store", "nflat", "memory")

    def __init__(self, t: T.ValType, lift, load, lower, store, memory: bool):
        self.type = t
        self.lift = lift
        self.load = load
        self.lower = lower
        self.store = store
        self.nflat = len(t.flat)
        self.memory = memory  # whether lifting or lowering it can touch linear memory


class Planner:
    """Builds and caches the plan of each type (types are shared by many functions).

    Types whose ids are in `shared_ids` outlive this planner (they are shared by the instances of one
    component): their plans are asked of, and kept by, the `shared` planner."""

    def __init__(self, shared: "Planner | None" = None, shared_ids: set[int] | frozenset[int] = frozenset()) -> None:
        self._plans: dict[int, Plan] = {}
        self._shapes: dict[tuple, tuple] = {}
        self.shared = shared
        self.shared_ids = shared_ids

    def plan(self, t: T.ValType) -> Plan:
        p = self._plans.get(id(t))
        if p is None or p.type is not t:
            if self.shared is not None and id(t) in self.shared_ids:
                return self.shared.plan(t)
            p = self._build(t)
            self._plans[id(t)] = p
        return p

    def lower_shape(self, ft: T.FuncType) -> tuple:
        """What `lower_adapter` needs of a function type, whatever the function and instance."""
        key = ("lower", id(ft))
        shape = self._shapes.get(key)
        if shape is None or shape[0] is not ft:
            if self.shared is not None and id(ft) in self.shared_ids:
                return self.shared.lower_shape(ft)
            shape = (ft, _lower_shape(self, ft))
            self._shapes[key] = shape
        return shape[1]

    def _build(self, t: T.ValType) -> Plan:
        if isinstance(t, T.Prim):
            return _PRIMITIVE_PLANS[t.kind](t)
        if isinstance(t, T.StringType):
            return _string_plan(t)
        if isinstance(t, T.ListType):
            return self._list_plan(t)
        if isinstance(t, T.RecordType):
            return self._record_plan(t, [n for n, _ in t.fields], [ft for _, ft in t.fields], dict)
        if isinstance(t, T.TupleType):
            return self._record_plan(t, list(range(len(t.elems))), t.elems, tuple)
        if isinstance(t, T.VariantType):
            return self._variant_plan(t)
        if isinstance(t, T.EnumType):
            return _enum_plan(t)
        if isinstance(t, T.OptionType):
            return self._option_plan(t)
        if isinstance(t, T.ResultType):
            return self._result_plan(t)
        if isinstance(t, T.FlagsType):
            return _flags_plan(t)
        if isinstance(t, T.OwnType):
            return _own_plan(t)
        if isinstance(t, T.BorrowType):
            return _borrow_plan(t)
        raise TypeError(f"no canonical ABI plan for {t!r}")

    # lists ----------------------------------------------------------------------------------

    def _list_plan(self, t: T.ListType) -> Plan:
        if t.length is not None:
            return self._record_plan(t, list(range(t.length)), [t.elem] * t.length, list)
        elem = t.elem
        ep = self.plan(elem)
        size, align = elem.size, elem.align
        load_range, store_range = _scalar_list_ops(elem) or (None, None)

        if load_range is None:
            eload, estore = ep.load, ep.store

            def load_range(cx, mv, ptr, n):
                return [eload(cx, mv, p) for p in range(ptr, ptr + n * size, size)]

            def store_range(cx, v):
                n = list_length(v, size)
                ptr = cx.allocate(align, n * size)
                p = ptr
                for e in v:
                    estore(cx, e, p)
                    p += size
                return ptr, n

        def load_list(cx, mv, ptr, n):
            check_range(mv, ptr, n * size, align, "list")
            return load_range(cx, mv, ptr, n)

        def lift(cx, vals, i):
            return load_list(cx, cx.mv, vals[i] & M32, vals[i + 1] & M32)

        def load(cx, mv, ptr):
            p, n = _PTR_LEN.unpack_from(mv, ptr)
            return load_list(cx, mv, p, n)

        def lower(cx, v, out, i):
            out[i], out[i + 1] = store_range(cx, v)

        def store(cx, v, ptr):
            p, n = store_range(cx, v)
            _PTR_LEN.pack_into(cx.mv, ptr, p, n)

        return Plan(t, lift, load, lower, store, True)

    # records and tuples (and fixed-length lists) ----------------------------------------------

    def _record_plan(self, t: T.ValType, keys: list, elems: list[T.ValType], make: type) -> Plan:
        plans = [self.plan(e) for e in elems]
        offsets = T.field_offsets(elems)[0]
        flat_offsets = []
        k = 0
        for p in plans:
            flat_offsets.append(k)
            k += p.nflat
        memory = any(p.memory for p in plans)
        lifts = list(zip(keys, flat_offsets, [p.lift for p in plans]))
        loads = list(zip(keys, offsets, [p.load for p in plans]))
        lowers = list(zip(keys, flat_offsets, [p.lower for p in plans]))
        stores = list(zip(keys, offsets, [p.store for p in plans]))
        what = t.kind

        if make is dict:
            def lift(cx, vals, i):
                return {key: f(cx, vals, i + o) for key, o, f in lifts}

            def load(cx, mv, ptr):
                return {key: f(cx, mv, ptr + o) for key, o, f in loads}

            def fields(v):
                if not isinstance(v, dict):
                    raise trap(f"expected a dict for a {what}, got {type(v).__name__}")
                return v
        else:
            def lift(cx, vals, i):
                return make([f(cx, vals, i + o) for _, o, f in lifts])

            def load(cx, mv, ptr):
                return make([f(cx, mv, ptr + o) for _, o, f in loads])

            n = len(elems)

            def fields(v):
                if len(v) != n:
                    raise trap(f"expected {n} elements for a {what}, got {len(v)}")
                return v

        def lower(cx, v, out, i):
            v = fields(v)
            try:
                for key, o, f in lowers:
                    f(cx, v[key], out, i + o)
            except KeyError as e:
                raise trap(f"{what} value lacks field {e}") from None

        def store(cx, v, ptr):
            v = fields(v)
            try:
                for key, o, f in stores:
                    f(cx, v[key], ptr + o)
            except KeyError as e:
                raise trap(f"{what} value lacks field {e}") from None

        return Plan(t, lift, load, lower, store, memory)

    # variants, options, results ---------------------------------------------------------------

    def _cases_plan(self, t: T.ValType, n_cases: int, payloads: list[T.ValType | None], payload_offset: int,
                    make_value: Callable[[int, Any], Any], case_of: Callable[[Any], tuple[int, Any]]) -> Plan:
        """Any variant-like type: case index, then the case's payload (CanonicalABI.md, variants)."""
        plans = [None if p is None else self.plan(p) for p in payloads]
        disc = T.discriminant_size(n_cases)
        disc_struct = {1: _U8, 2: _U16, 4: _U32}[disc]
        memory = any(p is not None and p.memory for p in plans)
        lifts = [None if p is None else p.lift for p in plans]
        loads = [None if p is None else p.load for p in plans]
        lowers = [None if p is None else p.lower for p in plans]
        stores = [None if p is None else p.store for p in plans]
        what = t.kind

        def lift(cx, vals, i):
            case = vals[i] & M32
            if case >= n_cases:
                raise trap(f"invalid {what} discriminant {case}")
            f = lifts[case]
            return make_value(case, None if f is None else f(cx, vals, i + 1))

        def load(cx, mv, ptr):
            case = disc_struct.unpack_from(mv, ptr)[0]
            if case >= n_cases:
                raise trap(f"invalid {what} discriminant {case}")
            f = loads[case]
            return make_value(case, None if f is None else f(cx, mv, ptr + payload_offset))

        def lower(cx, v, out, i):
            case, payload = case_of(v)
            out[i] = case
            f = lowers[case]
            if f is not None:
                f(cx, payload, out, i + 1)

        def store(cx, v, ptr):
            case, payload = case_of(v)
            disc_struct.pack_into(cx.mv, ptr, case)
            f = stores[case]
            if f is not None:
                f(cx, payload, ptr + payload_offset)

        return Plan(t, lift, load, lower, store, memory)

    def _variant_plan(self, t: T.VariantType) -> Plan:
        labels = [label for label, _ in t.cases]
        index = {label: k for k, label in enumerate(labels)}

        def make_value(case, payload):
            return Variant(labels[case], payload)

        def case_of(v):
            if isinstance(v, Variant):
                label, payload = v.case, v.value
            else:
                label, payload = v, None
            k = index.get(label)
            if k is None:
                raise trap(f"unknown variant case {label!r}")
            return k, payload

        return self._cases_plan(t, len(labels), [ct for _, ct in t.cases], t.payload_offset, make_value, case_of)

    def _option_plan(self, t: T.OptionType) -> Plan:
        wrap = isinstance(t.elem, T.OptionType)  # option<option<T>>: some(none) must not read as none

        def make_value(case, payload):
            if case == 0:
                return None
            return Some(payload) if wrap else payload

        def case_of(v):
            if v is None:
                return 0, None
            if isinstance(v, Some):
                return 1, v.value
            return 1, v

        return self._cases_plan(t, 2, [None, t.elem], t.payload_offset, make_value, case_of)

    def _result_plan(self, t: T.ResultType) -> Plan:
        def make_value(case, payload):
            return Ok(payload) if case == 0 else Err(payload)

        def case_of(v):
            if isinstance(v, Err):
                return 1, v.value
            if isinstance(v, Ok):
                return 0, v.value
            return 0, v

        return self._cases_plan(t, 2, [t.ok, t.err], t.payload_offset, make_value, case_of)


# -- primitive plans --------------------------------------------------------------------------


def _int_plan(t: T.Prim, bits: int, signed: bool, st: struct.Struct) -> Plan:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    mask = (1 << bits) - 1
    core_mask = M64 if bits == 64 else M32
    sign = 1 << (bits - 1)
    kind = t.kind

    if signed:
        def lift(cx, vals, i):
            return ((vals[i] & mask) ^ sign) - sign
    else:
        def lift(cx, vals, i):
            return vals[i] & mask

    def check(v):
        v = _index(v)
        if v < lo or v > hi:
            raise trap(f"value {v} out of range for {kind}")
        return v

    def lower(cx, v, out, i):
        out[i] = check(v) & core_mask

    unpack_from, pack_into = st.unpack_from, st.pack_into

    def load(cx, mv, ptr):
        return unpack_from(mv, ptr)[0]

    def store(cx, v, ptr):
        pack_into(cx.mv, ptr, check(v))

    return Plan(t, lift, load, lower, store, False)


def _bool_plan(t: T.Prim) -> Plan:
    def lift(cx, vals, i):
        return (vals[i] & M32) != 0

    def load(cx, mv, ptr):
        return mv[ptr] != 0

    def lower(cx, v, out, i):
        out[i] = 1 if v else 0

    def store(cx, v, ptr):
        cx.mv[ptr] = 1 if v else 0

    return Plan(t, lift, load, lower, store, False)


def f32_from_bits(bits: int) -> float:
    f = _F32.unpack(_U32.pack(bits & M32))[0]
    return NAN if f != f else f  # NaN canonicalisation on lift


def f64_from_bits(bits: int) -> float:
    f = _F64.unpack(_U64.pack(bits & M64))[0]
    return NAN if f != f else f


def f32_to_bits(v: float) -> int:
    v = float(v)
    if v != v:
        return CANONICAL_NAN32
    try:
        return _U32.unpack(_F32.pack(v))[0]
    except OverflowError:  # a double beyond f32's range rounds to infinity, as f32.demote does
        return _U32.unpack(_F32.pack(math.copysign(math.inf, v)))[0]


def f64_to_bits(v: float) -> int:
    v = float(v)
    if v != v:
        return CANONICAL_NAN64
    return _U64.unpack(_F64.pack(v))[0]


def _float_plan(t: T.Prim) -> Plan:
    if t.kind == "f32":
        from_bits, to_bits, st_u = f32_from_bits, f32_to_bits, _U32
    else:
        from_bits, to_bits, st_u = f64_from_bits, f64_to_bits, _U64
    unpack_from, pack_into = st_u.unpack_from, st_u.pack_into

    def lift(cx, vals, i):
        return from_bits(vals[i])

    def load(cx, mv, ptr):
        return from_bits(unpack_from(mv, ptr)[0])

    def lower(cx, v, out, i):
        out[i] = to_bits(v)

    def store(cx, v, ptr):
        pack_into(cx.mv, ptr, to_bits(v))

    return Plan(t, lift, load, lower, store, False)


def char_from_int(c: int) -> str:
    if c >= 0x110000 or 0xD800 <= c <= 0xDFFF:
        raise trap(f"invalid char code point {c:#x}")
    return chr(c)


def char_to_int(v: str) -> int:
    c = ord(v)
    if 0xD800 <= c <= 0xDFFF:
        raise trap(f"char value is a lone surrogate {c:#x}")
    return c


def _char_plan(t: T.Prim) -> Plan:
    def lift(cx, vals, i):
        return char_from_int(vals[i] & M32)

    def load(cx, mv, ptr):
        return char_from_int(_U32.unpack_from(mv, ptr)[0])

    def lower(cx, v, out, i):
        out[i] = char_to_int(v)

    def store(cx, v, ptr):
        _U32.pack_into(cx.mv, ptr, char_to_int(v))

    return Plan(t, lift, load, lower, store, False)


_PRIMITIVE_PLANS: dict[str, Callable[[T.Prim], Plan]] = {
    "bool": _bool_plan,
    "u8": lambda t: _int_plan(t, 8, False, _U8),
    "s8": lambda t: _int_plan(t, 8, True, _S8),
    "u16": lambda t: _int_plan(t, 16, False, _U16),
    "s16": lambda t: _int_plan(t, 16, True, _S16),
    "u32": lambda t: _int_plan(t, 32, False, _U32),
    "s32": lambda t: _int_plan(t, 32, True, _S32),
    "u64": lambda t: _int_plan(t, 64, False, _U64),
    "s64": lambda t: _int_plan(t, 64, True, _S64),
    "f32": _float_plan,
    "f64": _float_plan,
    "char": _char_plan,
}


# -- strings ----------------------------------------------------------------------------------


def _decode(mv: memoryview, ptr: int, nbytes: int, align: int, encoding: str) -> str:
    check_range(mv, ptr, nbytes, align, "string")
    try:
        return str(mv[ptr:ptr + nbytes], encoding)
    except UnicodeDecodeError:
        raise trap(f"string is not valid {encoding}") from None


def _load_utf8(mv, ptr, units):
    return _decode(mv, ptr, units, 1, "utf-8")


def _load_utf16(mv, ptr, units):
    return _decode(mv, ptr, 2 * units, 2, "utf-16-le")


def _load_latin1_utf16(mv, ptr, tagged):
    if tagged & UTF16_TAG:
        return _decode(mv, ptr, 2 * (tagged ^ UTF16_TAG), 2, "utf-16-le")
    return _decode(mv, ptr, tagged, 2, "latin-1")


def _encode(s: Any, encoding: str) -> bytes:
    if not isinstance(s, str):
        raise trap(f"expected a str for a string, got {type(s).__name__}")
    try:
        return s.encode(encoding)
    except UnicodeEncodeError:
        raise trap("string contains a lone surrogate") from None


def _store_bytes(cx: Context, data: bytes, align: int) -> int:
    if len(data) > MAX_STRING_BYTES:
        raise trap(f"a string of {len(data)} bytes exceeds the canonical ABI's 2 GiB limit")
    ptr = cx.allocate(align, len(data))
    cx.mv[ptr:ptr + len(data)] = data  # type: ignore[index]
    return ptr


def _store_utf8(cx, s):
    data = _encode(s, "utf-8")
    return _store_bytes(cx, data, 1), len(data)


def _store_utf16(cx, s):
    data = _encode(s, "utf-16-le")
    return _store_bytes(cx, data, 2), len(data) // 2


def _store_latin1_utf16(cx, s):
    if isinstance(s, str):
        try:
            data = s.encode("latin-1")
        except UnicodeEncodeError:
            pass
        else:
            return _store_bytes(cx, data, 2), len(data)
    data = _encode(s, "utf-16-le")
    return _store_bytes(cx, data, 2), (len(data) // 2) | UTF16_TAG


_STRING_LOADERS = {"utf8": _load_utf8, "utf16": _load_utf16, "latin1+utf16": _load_latin1_utf16}
_STRING_STORERS = {"utf8": _store_utf8, "utf16": _store_utf16, "latin1+utf16": _store_latin1_utf16}


def _string_plan(t: T.StringType) -> Plan:
    def lift(cx, vals, i):
        return cx.load_string(cx.mv, vals[i] & M32, vals[i + 1] & M32)

    def load(cx, mv, ptr):
        p, n = _PTR_LEN.unpack_from(mv, ptr)
        return cx.load_string(mv, p, n)

    def lower(cx, v, out, i):
        out[i], out[i + 1] = cx.store_string(cx, v)

    def store(cx, v, ptr):
        p, n = cx.store_string(cx, v)
        _PTR_LEN.pack_into(cx.mv, ptr, p, n)

    return Plan(t, lift, load, lower, store, True)


# -- scalar lists: one block copy, no per-element Python code ---------------------------------

_ARRAY_CODES = {"s8": "b", "u16": "H", "s16": "h", "u32": "I", "s32": "i", "u64": "Q", "s64": "q",
                "f32": "f", "f64": "d"}


def _scalar_list_ops(elem: T.ValType):
    """(load_range, store_range) copying a list of a scalar type as one block, or None."""
    kind = elem.kind if isinstance(elem, T.Prim) else None
    if kind == "u8":
        def load_range(cx, mv, ptr, n):
            return bytes(mv[ptr:ptr + n])

        def store_range(cx, v):
            if isinstance(v, memoryview):
                v = v.cast("B") if v.format != "B" or v.ndim != 1 else v
            elif hasattr(v, "readinto"):  # a byte producer: room first, then the bytes, in place
                n = list_length(v, 1)
                ptr = cx.allocate(1, n)
                if v.readinto(cx.mv[ptr:ptr + n]) != n:
                    raise trap("a list<u8> producer gave fewer bytes than its length")
                return ptr, n
            elif not isinstance(v, (bytes, bytearray)):
                try:
                    v = bytes(v)
                except (TypeError, ValueError) as e:
                    raise trap(f"bad list<u8> value: {e}") from None
            n = list_length(v, 1)
            ptr = cx.allocate(1, n)
            cx.mv[ptr:ptr + n] = v
            return ptr, n

        return load_range, store_range

    if kind in _ARRAY_CODES:
        code = _ARRAY_CODES[kind]
        size = elem.size
        is_float = kind in ("f32", "f64")

        def load_range(cx, mv, ptr, n):
            values = mv[ptr:ptr + n * size].cast(code).tolist()
            if is_float and any(map(math.isnan, values)):
                values = [NAN if x != x else x for x in values]
            return values

        def store_range(cx, v):
            try:
                data = array(code, v)
            except (OverflowError, TypeError) as e:
                raise trap(f"bad list<{kind}> value: {e}") from None
            n = list_length(data, size)
            ptr = cx.allocate(size, n * size)
            cx.mv[ptr:ptr + n * size] = memoryview(data).cast("B")
            return ptr, n

        return load_range, store_range

    if kind == "bool":
        def load_range(cx, mv, ptr, n):
            return list(map(bool, mv[ptr:ptr + n]))

        def store_range(cx, v):
            list_length(v, 1)
            data = bytes([1 if x else 0 for x in v])
            ptr = cx.allocate(1, len(data))
            cx.mv[ptr:ptr + len(data)] = data
            return ptr, len(data)

        return load_range, store_range

    if kind == "char":
        def load_range(cx, mv, ptr, n):
            return list(map(char_from_int, mv[ptr:ptr + 4 * n].cast("I")))

        def store_range(cx, v):
            list_length(v, 4)
            data = array("I", map(char_to_int, v))
            ptr = cx.allocate(4, 4 * len(data))
            cx.mv[ptr:ptr + 4 * len(data)] = memoryview(data).cast("B")
            return ptr, len(data)

        return load_range, store_range
    return None


# -- enums and flags --------------------------------------------------------------------------


def _enum_plan(t: T.EnumType) -> Plan:
    labels = t.labels
    n = len(labels)
    index = {label: k for k, label in enumerate(labels)}
    disc_struct = {1: _U8, 2: _U16, 4: _U32}[t.size]

    def from_case(case):
        if case >= n:
            raise trap(f"invalid enum discriminant {case}")
        return labels[case]

    def to_case(v):
        k = index.get(v)
        if k is None:
            raise trap(f"unknown enum case {v!r}")
        return k

    def lift(cx, vals, i):
        return from_case(vals[i] & M32)

    def load(cx, mv, ptr):
        return from_case(disc_struct.unpack_from(mv, ptr)[0])

    def lower(cx, v, out, i):
        out[i] = to_case(v)

    def store(cx, v, ptr):
        disc_struct.pack_into(cx.mv, ptr, to_case(v))

    return Plan(t, lift, load, lower, store, False)


def _flags_plan(t: T.FlagsType) -> Plan:
    labels = t.labels
    n = len(labels)
    words = t.words
    bit = {label: 1 << k for k, label in enumerate(labels)}
    mem_struct = {1: _U8, 2: _U16}.get(t.size) or struct.Struct(f"<{words}I")

    def to_set(bits):
        return {labels[k] for k in range(n) if bits >> k & 1}

    def to_bits(v):
        bits = 0
        try:
            for label in v:
                bits |= bit[label]
        except KeyError:
            raise trap(f"unknown flag {label!r}") from None
        return bits

    def lift(cx, vals, i):
        bits = 0
        for w in range(words):
            bits |= (vals[i + w] & M32) << (32 * w)
        return to_set(bits)

    def lower(cx, v, out, i):
        bits = to_bits(v)
        for w in range(words):
            out[i + w] = (bits >> (32 * w)) & M32

    if words == 1 or t.size < 4:
        def load(cx, mv, ptr):
            return to_set(mem_struct.unpack_from(mv, ptr)[0])

        def store(cx, v, ptr):
            mem_struct.pack_into(cx.mv, ptr, to_bits(v))
    else:
        def load(cx, mv, ptr):
            bits = 0
            for w, word in enumerate(mem_struct.unpack_from(mv, ptr)):
                bits |= word << (32 * w)
            return to_set(bits)

        def store(cx, v, ptr):
            bits = to_bits(v)
            mem_struct.pack_into(cx.mv, ptr, *[(bits >> (32 * w)) & M32 for w in range(words)])

    return Plan(t, lift, load, lower, store, False)


# -- handles: own and borrow (CanonicalABI.md, lift_own / lift_borrow / lower_own / lower_borrow) ---


def _own_plan(t: T.OwnType) -> Plan:
    rt = t.resource

    def lift_own(cx, i):
        h = cx.table.get(i)
        if h.resource is not rt:
            raise trap(f"handle index {i} used with the wrong resource type (expected {rt.name})")
        if not h.own:
            raise trap(f"handle index {i} is a borrow, an own was expected")
        cx.table.remove(i)
        if rt.instance is None:
            return h.rep
        return GuestResource(rt, h.rep, True)

    def lower_own(cx, v):
        if isinstance(v, GuestResource):
            if v.resource is not rt:
                raise trap(f"a {v.resource.name} handle given where a {rt.name} was expected")
            rep = v._take()
        else:
            rep = v
        return cx.table.add(Handle(rt, rep, True))

    return _handle_plan(t, lift_own, lower_own)


def _borrow_plan(t: T.BorrowType) -> Plan:
    rt = t.resource

    def lift_borrow(cx, i):
        # The lend count of CanonicalABI.md only guards against dropping a lent handle while the
        # callee runs; calls here are synchronous and cannot re-enter the lender, so it is not kept.
        h = cx.table.get(i)
        if h.resource is not rt:
            raise trap(f"handle index {i} used with the wrong resource type (expected {rt.name})")
        if rt.instance is None:
            return h.rep
        return GuestResource(rt, h.rep, False)

    def lower_borrow(cx, v):
        rep = v.rep if isinstance(v, GuestResource) else v
        if isinstance(v, GuestResource) and v.resource is not rt:
            raise trap(f"a {v.resource.name} handle given where a {rt.name} was expected")
        if rt.instance is not None and rt.instance is cx.instance:
            return rep  # a borrow of the callee's own resource is its rep
        task = cx.task
        task.num_borrows += 1
        return cx.table.add(Handle(rt, rep, False, task))

    return _handle_plan(t, lift_borrow, lower_borrow)


def _handle_plan(t: T.ValType, lift_handle, lower_handle) -> Plan:
    def lift(cx, vals, i):
        return lift_handle(cx, vals[i] & M32)

    def load(cx, mv, ptr):
        return lift_handle(cx, _U32.unpack_from(mv, ptr)[0])

    def lower(cx, v, out, i):
        out[i] = lower_handle(cx, v)

    def store(cx, v, ptr):
        _U32.pack_into(cx.mv, ptr, lower_handle(cx, v))

    return Plan(t, lift, load, lower, store, False)


# -- adapters: whole function calls -----------------------------------------------------------


def _lower_shape(planner: Planner, ft: T.FuncType) -> tuple:
    param_plans = [planner.plan(t) for _, t in ft.params]
    result = ft.result
    result_plan = planner.plan(result) if result is not None else None
    returns_result = isinstance(result, T.ResultType)
    params_spill = ft.params_spill
    result_spill = ft.result_spill
    n_core_params = len(ft.core_signature("lower")[0])
    needs_memory = params_spill or result_spill or any(p.memory for p in param_plans) or (
        result_plan is not None and result_plan.memory)
    params_tuple_plan = planner.plan(ft.params_tuple) if params_spill else None
    lifts = []
    k = 0
    for p in param_plans:
        lifts.append((k, p.lift))
        k += p.nflat
    slot_indices = range(0, 2 * n_core_params, 2)
    return (param_plans, result, result_plan, returns_result, params_spill, result_spill, needs_memory,
            params_tuple_plan, lifts, slot_indices)


def lower_adapter(planner: Planner, cx: Context, ft: T.FuncType, callee: Callable[..., Any], label: str):
    """`canon lower`: a function of the raw slots that lifts the guest's arguments, calls `callee`
    with plain values and lowers its result (into memory through the return pointer if it spills).

    `slots` is indexable with 16-byte wasmtime_val_raw_t slots seen as u64 pairs: slot k is slots[2k].
    """
    (param_plans, result, result_plan, returns_result, params_spill, result_spill, needs_memory,
     params_tuple_plan, lifts, slot_indices) = planner.lower_shape(ft)
    instance = cx.instance

    def call(args):
        try:
            return callee(*args)
        except Err as e:
            if not returns_result:
                raise trap(f"{label} raised an error value but returns no result") from None
            return e

    def adapter(slots):
        if not instance.may_leave:
            raise trap(LEAVE_TRAP)
        vals = [slots[j] for j in slot_indices]
        if needs_memory:
            mv = cx.view()
        if params_spill:
            ptr = vals[0] & M32
            check_range(mv, ptr, ft.params_tuple.size, ft.params_tuple.align, "parameters")
            args = params_tuple_plan.load(cx, mv, ptr)
        else:
            args = [f(cx, vals, i) for i, f in lifts]
        r = call(args)
        if result_plan is None:
            return
        if result_spill:
            ptr = vals[-1] & M32
            check_range(cx.view(), ptr, result.size, result.align, "return area")
            result_plan.store(cx, r, ptr)
        else:
            out = [0]
            result_plan.lower(cx, r, out, 0)
            slots[0] = out[0]

    # the hottest path, a function of no parameters and one scalar result (a clock, a check):
    # no memory view, no argument list
    if not param_plans and not needs_memory and result_plan is not None and result_plan.nflat == 1:
        lower1 = result_plan.lower

        def adapter(slots):  # noqa: F811
            if not instance.may_leave:
                raise trap(LEAVE_TRAP)
            out = [0]
            lower1(cx, call(()), out, 0)
            slots[0] = out[0]

    return adapter


class LiftedCall:
    """`canon lift`: calls a guest core function with plain values, as the host or another
    component sees the export. `core_call(raw_args) -> raw_result_or_None` runs the guest."""

    def __init__(self, planner: Planner, cx: Context, ft: T.FuncType, core_call, post_return, label: str):
        self.cx = cx
        self.ft = ft
        self.core_call = core_call
        self.post_return = post_return
        self.label = label
        self.param_plans = [planner.plan(t) for _, t in ft.params]
        self.params_tuple_plan = planner.plan(ft.params_tuple) if ft.params_spill else None
        self.result_plan = planner.plan(ft.result) if ft.result is not None else None
        self.nflat = len(ft.flat_params)
        lowers = []
        k = 0
        for p in self.param_plans:
            lowers.append((k, p.lower))
            k += p.nflat
        self.lowers = lowers

    def __call__(self, *args: Any) -> Any:
        cx, ft = self.cx, self.ft
        if len(args) != len(ft.params):
            raise TypeError(f"{self.label} takes {len(ft.params)} arguments, {len(args)} given")
        instance = cx.instance
        if not instance.may_enter:
            raise trap("wasm trap: cannot enter component instance")
        task = Task()
        outer_task = cx.task
        cx.task = task
        instance.may_enter = False
        try:
            value = self._call(cx, ft, task, args)
        except BaseException:
            cx.task = outer_task
            # a trap (or an exit unwinding the guest) once the guest ran leaves the instance poisoned,
            # as in wasmtime; a bad argument from the host, refused before the call, does not
            if not (task.entered and isinstance(sys.exc_info()[1], (Trap, GuestExit))):
                instance.may_enter = True
            raise
        cx.task = outer_task
        instance.may_enter = True
        return value

    def _call(self, cx: Context, ft: T.FuncType, task: Task, args: tuple) -> Any:
        if self.params_tuple_plan is not None:
            cx.view()
            tt = ft.params_tuple
            ptr = cx.allocate(tt.align, tt.size)
            self.params_tuple_plan.store(cx, tuple(args), ptr)
            raw = [ptr]
        else:
            raw = [0] * self.nflat
            for (i, lower), a in zip(self.lowers, args):
                lower(cx, a, raw, i)
        task.entered = True
        raw_result = self.core_call(raw)
        value = None
        rp = self.result_plan
        if rp is not None:
            if ft.result_spill:
                mv = cx.view()
                ptr = raw_result & M32
                check_range(mv, ptr, ft.result.size, ft.result.align, "return value")
                value = rp.load(cx, mv, ptr)
            else:
                if rp.memory:
                    cx.view()
                value = rp.lift(cx, [raw_result], 0)
        if self.post_return is not None:
            cx.instance.may_leave = False  # post-return may not call out either
            try:
                self.post_return([] if raw_result is None else [raw_result])
            finally:
                cx.instance.may_leave = True
        if task.num_borrows:
            raise trap(f"borrow handles still remain at the end of the call to {self.label}")
        return value
