"""Component value types, resolved: every type index followed, every resource bound to its identity.

Each type knows its canonical-ABI layout once, when it is made: `size` and `align` in linear memory
and `flat`, its flattened core types (CanonicalABI.md, "Alignment", "Element Size", "Flattening").
Tuples, enums, options and results lay out as the records and variants they despecialize to.
"""

from __future__ import annotations

from typing import Any

MAX_FLAT_PARAMS = 16
MAX_FLAT_RESULTS = 1


def align_to(ptr: int, alignment: int) -> int:
    return -(-ptr // alignment) * alignment


class ValType:
    __slots__ = ("size", "align", "flat")
    kind = "?"

    size: int
    align: int
    flat: tuple[str, ...]

    def __repr__(self) -> str:
        return self.kind


class Prim(ValType):
    __slots__ = ("kind",)

    def __init__(self, kind: str, size: int, flat: str):
        self.kind = kind
        self.size = self.align = size
        self.flat = (flat,)


BOOL = Prim("bool", 1, "i32")
S8 = Prim("s8", 1, "i32")
U8 = Prim("u8", 1, "i32")
S16 = Prim("s16", 2, "i32")
U16 = Prim("u16", 2, "i32")
S32 = Prim("s32", 4, "i32")
U32 = Prim("u32", 4, "i32")
S64 = Prim("s64", 8, "i64")
U64 = Prim("u64", 8, "i64")
F32 = Prim("f32", 4, "f32")
F64 = Prim("f64", 8, "f64")
CHAR = Prim("char", 4, "i32")


class StringType(ValType):
    __slots__ = ()
    kind = "string"

    def __init__(self) -> None:
        self.size, self.align, self.flat = 8, 4, ("i32", "i32")


STRING = StringType()

PRIMITIVES: dict[str, ValType] = {t.kind: t for t in
                                  (BOOL, S8, U8, S16, U16, S32, U32, S64, U64, F32, F64, CHAR, STRING)}


class ListType(ValType):
    __slots__ = ("elem", "length")
    kind = "list"

    def __init__(self, elem: ValType, length: int | None = None):
        self.elem = elem
        self.length = length
        if length is None:
            self.size, self.align, self.flat = 8, 4, ("i32", "i32")
        else:
            self.size, self.align, self.flat = elem.size * length, elem.align, elem.flat * length


def field_offsets(types: list[ValType]) -> tuple[list[int], int, int]:
    """Each field's offset in a record of these types, and the record's size and alignment."""
    offsets = []
    size = 0
    align = 1
    for ft in types:
        size = align_to(size, ft.align)
        offsets.append(size)
        size += ft.size
        align = max(align, ft.align)
    return offsets, align_to(size, align), align


def _record_layout(t: ValType, types: list[ValType]) -> list[int]:
    """Sets size/align/flat of a record-like type; returns each field's offset."""
    offsets, t.size, t.align = field_offsets(types)
    t.flat = tuple(f for ft in types for f in ft.flat)
    return offsets


class RecordType(ValType):
    __slots__ = ("fields", "offsets")
    kind = "record"

    def __init__(self, fields: list[tuple[str, ValType]]):
        self.fields = fields
        self.offsets = _record_layout(self, [t for _, t in fields])


class TupleType(ValType):
    __slots__ = ("elems", "offsets")
    kind = "tuple"

    def __init__(self, elems: list[ValType]):
        self.elems = elems
        self.offsets = _record_layout(self, elems)


def discriminant_size(n: int) -> int:
    if n <= 1 << 8:
        return 1
    if n <= 1 << 16:
        return 2
    return 4


def _join(a: str, b: str) -> str:
    if a == b:
        return a
    if {a, b} == {"i32", "f32"}:
        return "i32"
    return "i64"


def _variant_layout(t: ValType, n: int, payloads: list[ValType | None]) -> int:
    """Sets size/align/flat of a variant-like type; returns the payload offset."""
    disc = discriminant_size(n)
    case_align = max([p.align for p in payloads if p is not None], default=1)
    payload_offset = align_to(disc, case_align)
    payload_size = max([p.size for p in payloads if p is not None], default=0)
    t.align = max(disc, case_align)
    t.size = align_to(payload_offset + payload_size, t.align)
    flat: list[str] = []
    for p in payloads:
        if p is None:
            continue
        for i, f in enumerate(p.flat):
            if i < len(flat):
                flat[i] = _join(flat[i], f)
            else:
                flat.append(f)
    t.flat = ("i32", *flat)
    return payload_offset


class VariantType(ValType):
    __slots__ = ("cases", "payload_offset")
    kind = "variant"

    def __init__(self, cases: list[tuple[str, ValType | None]]):
        self.cases = cases
        self.payload_offset = _variant_layout(self, len(cases), [t for _, t in cases])


class EnumType(ValType):
    __slots__ = ("labels",)
    kind = "enum"

    def __init__(self, labels: list[str]):
        self.labels = labels
        _variant_layout(self, len(labels), [None] * len(labels))


class OptionType(ValType):
    __slots__ = ("elem", "payload_offset")
    kind = "option"

    def __init__(self, elem: ValType):
        self.elem = elem
        self.payload_offset = _variant_layout(self, 2, [None, elem])


class ResultType(ValType):
    __slots__ = ("ok", "err", "payload_offset")
    kind = "result"

    def __init__(self, ok: ValType | None, err: ValType | None):
        self.ok = ok
        self.err = err
        self.payload_offset = _variant_layout(self, 2, [ok, err])


class FlagsType(ValType):
    """Flags of any width: up to 32 in 1, 2 or 4 bytes, more in whole 32-bit words."""

    __slots__ = ("labels", "words")
    kind = "flags"

    def __init__(self, labels: list[str]):
        self.labels = labels
        n = len(labels)
        self.words = -(-n // 32)
        if n <= 8:
            self.size = self.align = 1
        elif n <= 16:
            self.size = self.align = 2
        else:
            self.size, self.align = 4 * self.words, 4
        self.flat = ("i32",) * self.words


class ResourceType:
    """The identity of one resource type: handles of it are checked against it with `is`.

    Host resources: `instance` is None and `host_class` the Python class of its objects.
    Guest resources: `instance` is the component instance that defined it, `dtor` its destructor.
    """

    __slots__ = ("name", "instance", "dtor", "host_class")

    def __init__(self, name: str, instance: Any = None, dtor: Any = None, host_class: type | None = None):
        self.name = name
        self.instance = instance
        self.dtor = dtor
        self.host_class = host_class

    def __repr__(self) -> str:
        return f"resource {self.name}"


class OwnType(ValType):
    __slots__ = ("resource",)
    kind = "own"

    def __init__(self, resource: ResourceType):
        self.resource = resource
        self.size, self.align, self.flat = 4, 4, ("i32",)


class BorrowType(ValType):
    __slots__ = ("resource",)
    kind = "borrow"

    def __init__(self, resource: ResourceType):
        self.resource = resource
        self.size, self.align, self.flat = 4, 4, ("i32",)


class FuncType:
    __slots__ = ("params", "result", "flat_params", "flat_results", "params_tuple")

    def __init__(self, params: list[tuple[str, ValType]], result: ValType | None):
        self.params = params
        self.result = result
        self.params_tuple = TupleType([t for _, t in params]) if params else None
        self.flat_params = tuple(f for _, t in params for f in t.flat)
        self.flat_results = result.flat if result is not None else ()

    @property
    def params_spill(self) -> bool:
        return len(self.flat_params) > MAX_FLAT_PARAMS

    @property
    def result_spill(self) -> bool:
        return len(self.flat_results) > MAX_FLAT_RESULTS

    def core_signature(self, context: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The core function type of `canon lift` ('lift') or `canon lower` ('lower') of this type."""
        params = ("i32",) if self.params_spill else self.flat_params
        results = self.flat_results
        if self.result_spill:
            if context == "lift":
                results = ("i32",)
            else:
                params = (*params, "i32")
                results = ()
        return params, results

    def __repr__(self) -> str:
        ps = ", ".join(f"{n}: {t!r}" for n, t in self.params)
        return f"func({ps})" + (f" -> {self.result!r}" if self.result is not None else "")


def contains_borrow(t: ValType | None) -> bool:
    if t is None:
        return False
    if isinstance(t, BorrowType):
        return True
    if isinstance(t, ListType):
        return contains_borrow(t.elem)
    if isinstance(t, RecordType):
        return any(contains_borrow(ft) for _, ft in t.fields)
    if isinstance(t, TupleType):
        return any(contains_borrow(et) for et in t.elems)
    if isinstance(t, VariantType):
        return any(contains_borrow(ct) for _, ct in t.cases)
    if isinstance(t, OptionType):
        return contains_borrow(t.elem)
    if isinstance(t, ResultType):
        return contains_borrow(t.ok) or contains_borrow(t.err)
    return False
