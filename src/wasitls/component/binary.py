"""The component binary format (design/mvp/Binary.md), parsed into plain definitions.

`parse_component(wasm)` returns a `Component`: its definitions in binary order, each a small
definition named after the grammar rule it comes from. Core modules stay as bytes (wasmtime compiles
them). Nothing here resolves an index: that is the runtime's walk over `Component.definitions`.
The parser itself is in binary_parser.py, imported only when a component is parsed.

Features this host does not implement (the async ABI, `stream`/`future`/`error-context`, threads,
value definitions) are rejected by the parser, with one line naming the feature and where it occurs.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, ClassVar, Union

from .errors import ComponentError

# -- definitions: tuples with named fields ------------------------------------------------------


class _Def(tuple):
    """A definition: a tuple whose fields are named by the class's annotations, like a NamedTuple,
    but ~10x cheaper to define (typing.NamedTuple cost ~3 ms of every start for these 40 classes).
    Compares and hashes as a tuple."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[tuple[Any, ...]] = ()  # of the last fields, as `name: type = default` gives them

    def __init_subclass__(cls) -> None:
        cls._fields = tuple(name for name in cls.__dict__.get("__annotations__", {}) if name[0] != "_")
        cls._defaults = tuple(cls.__dict__[name] for name in cls._fields if name in cls.__dict__)
        for i, name in enumerate(cls._fields):
            setattr(cls, name, property(itemgetter(i)))

    def __new__(cls, *values: Any) -> "_Def":
        n = len(cls._fields)
        if len(values) != n:
            missing = n - len(values)
            if not 0 < missing <= len(cls._defaults):
                raise TypeError(f"{cls.__name__} takes {n} values ({', '.join(cls._fields)}), got {len(values)}")
            values += cls._defaults[len(cls._defaults) - missing:]
        return tuple.__new__(cls, values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={v!r}' for f, v in zip(self._fields, self))})"


class CoreModule(_Def):
    wasm: bytes
    offset: int


class CoreInstantiate(_Def):
    module: int
    args: list[tuple[str, int]]  # (import module name, core instance index)


class CoreInlineExports(_Def):
    exports: list[tuple[str, str, int]]  # (name, core sort, index)


class CoreFuncType(_Def):
    params: tuple[str, ...]
    results: tuple[str, ...]


class CoreModuleType(_Def):
    decls: list[Any]  # kept only to be skipped: importing core modules is not served


class CoreTypeDef(_Def):
    type: Union[CoreFuncType, CoreModuleType, None]  # None: a GC type we parse past but never use


class Instantiate(_Def):
    component: int
    args: list[tuple[str, str, int]]  # (name, sort, index)


class InlineExports(_Def):
    exports: list[tuple[str, str, int]]  # (name, sort, index)


class AliasExport(_Def):
    sort: str
    instance: int
    name: str


class AliasCoreExport(_Def):
    sort: str
    instance: int
    name: str


class AliasOuter(_Def):
    sort: str
    count: int
    index: int


Alias = Union[AliasExport, AliasCoreExport, AliasOuter]

# value types: a valtype is an int (type index) or a str (primitive name)
ValTypeRef = Union[int, str]


class RecordDef(_Def):
    fields: list[tuple[str, ValTypeRef]]


class VariantDef(_Def):
    cases: list[tuple[str, ValTypeRef | None]]


class ListDef(_Def):
    elem: ValTypeRef
    length: int | None = None


class TupleDef(_Def):
    elems: list[ValTypeRef]


class FlagsDef(_Def):
    labels: list[str]


class EnumDef(_Def):
    labels: list[str]


class OptionDef(_Def):
    elem: ValTypeRef


class ResultDef(_Def):
    ok: ValTypeRef | None
    err: ValTypeRef | None


class OwnDef(_Def):
    resource: int


class BorrowDef(_Def):
    resource: int


class PrimDef(_Def):
    name: str


class FuncTypeDef(_Def):
    params: list[tuple[str, ValTypeRef]]
    result: ValTypeRef | None


class ResourceDef(_Def):
    rep: str
    dtor: int | None


class ExternType(_Def):
    """What an import or export is: sort ('func', 'instance', 'type', ...) and its type.

    For 'type': `index` is the type of an `(eq i)` bound, or None for `(sub resource)`.
    """

    sort: str
    index: int | None


class DeclType(_Def):
    type: Any  # a deftype


class DeclCoreType(_Def):
    type: CoreTypeDef


class DeclAlias(_Def):
    alias: Alias


class DeclExport(_Def):
    name: str
    extern: ExternType


class DeclImport(_Def):
    name: str
    extern: ExternType


class InstanceTypeDef(_Def):
    decls: list[Any]


class ComponentTypeDef(_Def):
    decls: list[Any]


class TypeDef(_Def):
    type: Any  # one of the *Def classes above


class CanonOptions:
    __slots__ = ("string_encoding", "memory", "realloc", "post_return")

    def __init__(self) -> None:
        self.string_encoding = "utf8"
        self.memory: int | None = None
        self.realloc: int | None = None
        self.post_return: int | None = None


class CanonLift(_Def):
    core_func: int
    options: CanonOptions
    type: int


class CanonLower(_Def):
    func: int
    options: CanonOptions


class CanonResourceNew(_Def):
    type: int


class CanonResourceDrop(_Def):
    type: int


class CanonResourceRep(_Def):
    type: int


class Import(_Def):
    name: str
    extern: ExternType


class Export(_Def):
    name: str
    sort: str
    index: int
    extern: ExternType | None


class Component:
    __slots__ = ("definitions", "offset", "depth")

    def __init__(self, offset: int = 0, depth: int = 0):
        self.definitions: list[Any] = []
        self.offset = offset
        self.depth = depth

    @property
    def imports(self) -> list[Import]:
        return [d for d in self.definitions if isinstance(d, Import)]

    @property
    def exports(self) -> list[Export]:
        return [d for d in self.definitions if isinstance(d, Export)]


# -- the format's constants, and parsing ----------------------------------------------------------

MAGIC = b"\0asm"
COMPONENT_VERSION = b"\x0d\x00\x01\x00"

# How deep components, component and instance types, and core module types may nest inside one
# another. Real components nest a few levels; the bound keeps every walk over definitions (the
# parser, the instantiation, the compile-cache index) far from Python's recursion limit.
MAX_NESTING = 100


class Unsupported(ComponentError):
    """A feature of the component model this host does not implement."""


def parse_component(wasm: bytes) -> Component:
    """Parses a whole component binary; raises ComponentError with one line on anything wrong."""
    from .binary_parser import parse  # the parser's code is compiled only when something is parsed

    return parse(wasm)
