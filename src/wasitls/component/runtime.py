"""Instantiating a parsed component over wasmtime's core API.

The definitions of `binary.Component` are walked in order, as the component model runs them
(Explainer.md): each adds to one index space of its component's `Scope`. Core modules are
instantiated with wasmtime's core API; `canon lower` makes a core function whose body is a raw
unchecked callback reading and writing value slots, `canon lift` a Python callable that calls the
core function the same raw way (both through `wasmtime_capi`). Lifting and lowering themselves are
in `canonical.py`; compiling the core modules is the backend's (fast.py).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import wasmtime

from . import binary as B
from . import canonical as C
from . import types as T
from . import wasmtime_capi as capi
from .errors import ComponentError, GuestTrap, UnservedImports
from .linker import HostLinker, host_function, resource_class
from .plan import EXPORTS, INSTANCE, LIFT, LOWER, RESOURCE, STATE, NotPlannable, Plan, Recorder
from .values import GuestExit, Trap
from .wasmtime_capi import CoreCall, CoreExtern, LinearMemory


class CoreTrap(Trap):
    """The guest trapped inside a core call made from host code (the message names the trap)."""


class CompiledModule:
    __slots__ = ("module", "imports")

    def __init__(self, module: wasmtime.Module, imports: list[tuple[str, str]]):
        self.module = module
        self.imports = imports  # (module, name) of each import, in order


def _describe(value: Any) -> str:
    if value is UNSERVED:
        return "an unserved import"
    return f"a {type(value).__name__}"


# -- the runtime of one instantiation ---------------------------------------------------------


def _closed(slots: Any) -> None:
    raise Trap("wasm trap: the instance is closed")


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

    __slots__ = ("fn", "ft", "label", "source")

    def __init__(self, fn: Callable[..., Any] | None, ft: T.FuncType, label: str, source: tuple[str, str]):
        self.fn = fn
        self.ft = ft
        self.label = label
        self.source = source  # (import name, function name): where a replayed instance finds its own

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


def _record_refs(t: Any) -> list[Any]:
    return [ft for _, ft in t.fields]


def _variant_refs(t: Any) -> list[Any]:
    return [ct for _, ct in t.cases]


def _func_refs(t: Any) -> list[Any]:
    return [p for _, p in t.params] + [t.result]


# the type indices (or primitive names, or None) a type definition refers to, in order; definitions not
# listed (resources, instance and component types) are never shared: they hold per-instance state
_DEF_REFS: dict[type, Callable[[Any], list[Any]]] = {
    B.RecordDef: _record_refs,
    B.VariantDef: _variant_refs,
    B.ListDef: lambda t: [t.elem],
    B.TupleDef: lambda t: list(t.elems),
    B.FlagsDef: lambda t: [],
    B.EnumDef: lambda t: [],
    B.OptionDef: lambda t: [t.elem],
    B.ResultDef: lambda t: [t.ok, t.err],
    B.OwnDef: lambda t: [t.resource],
    B.BorrowDef: lambda t: [t.resource],
    B.FuncTypeDef: _func_refs,
}


class SharedTypes:
    """What instantiating one loaded component resolves the same way every time, kept across its instances:
    value and function types built only from primitives, host resources and other shared types, host
    resource types (one per import name, resource and host class), and the canonical-ABI plans of them.
    Guest resources (and anything holding one) belong to one instance and are never shared."""

    def __init__(self) -> None:
        self.types: dict[tuple, Any] = {}
        self.refs: dict[int, tuple | bool] = {}  # by id of a type definition of the component: see _refs
        self.resources: dict[tuple, T.ResourceType] = {}
        self.ids: set[int] = {id(t) for t in T.PRIMITIVES.values()}  # the entries above keep these ids alive
        self.ids.add(id(None))
        self.planner = C.Planner()
        self.functypes: dict[tuple, Any] = {}  # see capi.CoreFunctions: a component has one engine

    def key(self, defn: Any, scope: "Scope") -> tuple | None:
        """What a shared type resolved from `defn` in `scope` is known by: the definition and the shared
        types it refers to there; None if it refers to anything not shared (or to nothing valid)."""
        refs = self.refs.get(id(defn))
        if refs is None:
            refs = self.refs[id(defn)] = self._refs(defn)
        if refs is False:
            return None
        ids = self.ids
        spaces = scope.spaces["type"]
        n = len(spaces)
        key = [id(defn)]
        for index, fixed in refs:
            if index < 0:
                key.append(fixed)
                continue
            if index >= n:
                return None  # out of bounds: resolving reports it
            k = id(spaces[index])
            if k not in ids:
                return None
            key.append(k)
        return tuple(key)

    @staticmethod
    def _refs(defn: Any) -> tuple | bool:
        """(type index, -1) or (-1, id of a primitive or None) for each type `defn` refers to; False if
        it is never shared."""
        refs = _DEF_REFS.get(type(defn))
        if refs is None:
            return False
        found = []
        for ref in refs(defn):
            if ref is None:
                found.append((-1, id(None)))
            elif isinstance(ref, str):
                prim = T.PRIMITIVES.get(ref)
                if prim is None:
                    return False
                found.append((-1, id(prim)))
            elif ref >= 0:
                found.append((ref, -1))
            else:
                return False
        return tuple(found)

    def add(self, key: tuple, value: Any) -> Any:
        """Shares `value` under `key`; returns the shared one (one winner if two threads race)."""
        shared = self.types.setdefault(key, value)
        if shared is value:
            self.ids.add(id(value))
            if isinstance(value, T.FuncType) and value.params_tuple is not None:
                self.ids.add(id(value.params_tuple))
        return shared

    def host_resource(self, iface: str, name: str, cls: type) -> T.ResourceType:
        rt = self.resources.get((iface, name, cls))
        if rt is None:
            rt = self.resources.setdefault((iface, name, cls), T.ResourceType(name, host_class=cls))
            self.ids.add(id(rt))
        return rt


class Runtime:
    """Everything one instantiation owns: the store, the callbacks, what a trap left behind."""

    def __init__(self, wasmtime_engine: wasmtime.Engine, modules: dict[int, CompiledModule], linker: HostLinker,
                 shared: SharedTypes | None = None, record: bool = False):
        self.store = wasmtime.Store(wasmtime_engine)
        self.ctx = capi.store_context(self.store)
        self.shared = shared if shared is not None else SharedTypes()
        self.functions = capi.CoreFunctions(self.ctx, self.shared.functypes)
        self._bodies: list[tuple[Callable[[Any], None], str] | None] = [None]  # env 0 is NULL: never a body
        self._callback = self._make_callback()
        self.modules = modules
        self.linker = linker
        self.planner = C.Planner(self.shared.planner, self.shared.ids)
        self.missing: list[str] = []
        self.pending: BaseException | None = None  # what a host function raised to unwind the guest
        self._memories: dict[CoreExtern, LinearMemory] = {}
        self._calls: dict[tuple[CoreExtern, int, int], CoreCall] = {}
        self._host_resources: dict[tuple[int, str], T.ResourceType] = {}
        # the walk's steps, for replaying it (plan.py); None when not recording, or once it cannot be
        self.rec: Recorder | None = Recorder(self.shared.ids) if record else None

    def _record(self, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except NotPlannable:  # this component is walked every time
            self.rec = None

    def plan(self, root: "InstanceValue") -> Plan | None:
        """The recorded plan of the instantiation that made `root`; None if it could not be recorded."""
        rec, self.rec = self.rec, None
        if rec is None:
            return None
        try:
            return rec.finish(root)
        except NotPlannable:
            return None

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
        return capi.new_trap(message)

    @staticmethod
    def core_trap(err: int | None, trap: int | None) -> CoreTrap:
        return CoreTrap(capi.trap_line(capi.failure_text(err, trap)))

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
        self._bodies.append((adapter, label))
        return self.functions.new_shared(params, results, self._callback, len(self._bodies) - 1)

    def new_lazy_core_func(self, params: tuple[str, ...], results: tuple[str, ...], make: Callable[[], Any],
                           label: str) -> CoreExtern:
        """As new_core_func, but the body is made by `make()` when the guest first calls it: a replayed
        instance gets about 190 host functions and calls a handful."""
        bodies = self._bodies
        index = len(bodies)

        def first_call(slots: Any) -> None:
            adapter = make()
            bodies[index] = (adapter, label)
            adapter(slots)

        bodies.append((first_call, label))
        return self.functions.new_shared(params, results, self._callback, index)

    def _make_callback(self) -> Any:
        """The one raw callback of this store's host functions: `env` is the index of the function's body."""
        bodies = self._bodies
        runtime = weakref.ref(self)  # not a cycle: a closed runtime goes as soon as nothing uses it

        def callback(env, caller, slots, nslots):
            label = "host function"
            try:
                adapter, label = bodies[env]
                adapter(slots)
                return 0
            except BaseException as e:  # every exception becomes a trap; exits are re-raised by call()
                rt = runtime()
                return rt.trap_for(e, label) if rt is not None else capi.new_trap("the instance is closed")

        return capi.RAW_CALLBACK(callback)

    def core_call(self, func: Any, nparams: int, nresults: int) -> CoreCall:
        if not isinstance(func, CoreExtern) or func[0] != capi.EXTERN_FUNC:
            raise ComponentError(f"invalid component: expected a core function, got {_describe(func)}")
        key = (func, nparams, nresults)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = CoreCall(self.ctx, func, nparams, nresults, self.core_trap)
        return call

    def close(self) -> None:
        """Drops the host functions' bodies and the call helpers, which refer back to this runtime: the
        store and everything made for it then go by reference counting. The store itself lives as long
        as anything still refers to it; a host function called after this traps."""
        self._bodies[1:] = [(_closed, "closed instance")] * (len(self._bodies) - 1)
        self._calls.clear()
        self._memories.clear()
        self._host_resources.clear()

    def memory(self, mem: Any) -> LinearMemory:
        if not isinstance(mem, CoreExtern) or mem[0] != capi.EXTERN_MEMORY:
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
                rt = T.ResourceType(name)
            else:
                rt = self.shared.host_resource(iface, name, cls)
            self._host_resources[key] = rt
        return rt

    # the walk ---------------------------------------------------------------------------------

    def instantiate(self, comp: B.Component) -> InstanceValue:
        state = InstanceState("root")
        if self.rec is not None:
            self._record(self.rec.state, state, "root")
        scope = Scope(None, state)
        self.run(comp, scope, None)
        if self.missing:
            raise UnservedImports(self.missing)
        return InstanceValue(scope.exports, "root")

    @staticmethod
    def _refuse(why: str) -> None:
        raise NotPlannable(why)

    def replay(self, plan: Plan) -> InstanceValue:
        """Instantiates by running a plan recorded from an earlier instance of the same component.

        Raises NotPlannable, before anything is made, if this host serves an import differently."""
        impls = {}
        for name, cls in plan.imports:
            impl = self.linker.resolve(name)
            if type(impl) is not cls:
                raise NotPlannable(f"{name} is served by another class")
            impls[name] = impl
        values: list[Any] = [None] * plan.nregs
        planner = self.planner
        for step in plan.steps:
            kind = step[0]
            if kind is EXPORTS:
                take = values[step[1]].by_raw_name
                for raw, r in step[2]:
                    values[r] = take(raw)
            elif kind is LOWER:
                values[step[1]] = self.new_lazy_core_func(step[2], step[3], self._lowering(step, values, impls),
                                                          step[7])
            elif kind is INSTANCE:
                values[step[1]] = self._instantiate_core(step[2].module, [values[i] for i in step[3]])
            elif kind is RESOURCE:
                values[step[1]] = self.resource_func(step[2], step[3], values[step[4]])
            elif kind is LIFT:
                _, r, ft, func, nparams, nresults, post_return, spec, label = step
                pr = None if post_return is None else self.core_call(values[post_return], nresults, 0)
                values[r] = C.LiftedCall(planner, self._replay_context(spec, values), ft,
                                         self.core_call(values[func], nparams, nresults), pr, label)
            elif kind is STATE:
                values[step[1]] = InstanceState(step[2])
        return plan.build_exports(values, InstanceValue)

    def _lowering(self, step: tuple, values: list[Any], impls: dict[str, Any]) -> Callable[[], Any]:
        """What makes a replayed `canon lower`'s body: the host class is the recorded one (replay
        checked), so the function the walk found is there."""
        def make() -> Any:
            _, _, _, _, ft, callee, spec, label = step
            fn = host_function(impls[callee[1]], callee[2]) if callee[0] == "host" else values[callee[1]]
            return C.lower_adapter(self.planner, self._replay_context(spec, values), ft, fn, label)
        return make

    def _replay_context(self, spec: tuple, values: list[Any]) -> C.Context:
        memory, realloc, encoding, state = spec
        return self.make_context(None if memory is None else values[memory],
                                 None if realloc is None else values[realloc], encoding, values[state])

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
            if self.rec is not None and isinstance(inst, capi.CoreExports):
                self._record(self.rec.export_taken, inst, name, ext)
            externs.append(ext)
        exports = self._instantiate_core(module, externs)
        if self.rec is not None:
            self._record(self.rec.instance, exports, compiled, externs)
        scope.add("core instance", exports)

    def _instantiate_core(self, module: wasmtime.Module, externs: list[CoreExtern]) -> capi.CoreExports:
        try:
            return capi.instantiate_core(self.ctx, module, externs)
        except capi.CoreFailure as f:
            e = CoreTrap(capi.trap_line(str(f)))
            if self.pending is not None or f.trapped:  # the start function trapped
                raise self.guest_trap(e) from None
            raise ComponentError(f"cannot instantiate core module: {e}")

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
        state = InstanceState(f"component #{len(scope.spaces['instance'])}")
        if self.rec is not None:
            self._record(self.rec.state, state, state.name)
        inner = Scope(closure.scope, state)
        self.run(closure.defn, inner, given)
        scope.add("instance", InstanceValue(inner.exports))

    def inline_exports(self, d: B.InlineExports, scope: Scope, args) -> None:
        scope.add("instance", InstanceValue({name: (sort, scope.get(sort, i)) for name, sort, i in d.exports}))

    def alias(self, d: Any, scope: Scope, args) -> None:
        scope.add(d.sort, self.alias_target(d, scope))

    def alias_core_export(self, d: B.AliasCoreExport, scope: Scope, args) -> None:
        # the commonest definition of a componentize-py guest (thousands): alias_target's path, direct
        scope.spaces[d.sort].append(self._core_export(scope.get("core instance", d.instance), d.name))

    def _core_export(self, inst: Any, name: str) -> Any:
        """A core instance's export by name (a lookup in the store the plan records), or a bag's entry."""
        try:
            value = inst[name]
        except KeyError:
            raise ComponentError(f"invalid component: core instance has no export {name!r}") from None
        if self.rec is not None and isinstance(inst, capi.CoreExports):
            self._record(self.rec.export_taken, inst, name, value)
        return value

    def alias_target(self, d: Any, scope: Scope) -> Any:
        if isinstance(d, B.AliasOuter):
            return scope.outer(d.count).get(d.sort, d.index)
        if isinstance(d, B.AliasCoreExport):
            return self._core_export(scope.get("core instance", d.instance), d.name)
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
        post_return = pr_func = None
        if d.options.post_return is not None:
            pr_func = scope.get("core func", d.options.post_return)
            post_return = self.core_call(pr_func, len(results), 0)
        lifted = C.LiftedCall(self.planner, cx, ft, call, post_return, label)
        if self.rec is not None:
            self._record(lambda: self.rec.lift(lifted, ft, core_func, len(params), len(results), pr_func,
                                               self._context_spec(d.options, scope)))
        scope.add("func", lifted)

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
        func = self.new_core_func(params, results, adapter, label)
        if self.rec is not None:
            self._record(lambda: self.rec.lower(
                func, params, results, ft,
                ("host", *f.source) if isinstance(f, HostFunc) else ("lifted", self.rec.reg(f)),
                self._context_spec(d.options, scope), label))
        scope.add("core func", func)

    def canon_resource(self, d: Any, scope: Scope, args) -> None:
        rt = scope.get("type", d.type)
        if rt is UNSERVED:
            scope.add("core func", UNSERVED)
            return
        if not isinstance(rt, T.ResourceType):
            raise ComponentError("invalid component: resource built-in on a type that is not a resource")
        kind = type(d).__name__
        func = self.resource_func(kind, rt, scope.state)
        if self.rec is not None:
            self._record(self.rec.resource, func, kind, rt, scope.state)
        scope.add("core func", func)

    def resource_func(self, kind: str, rt: T.ResourceType, state: InstanceState) -> CoreExtern:
        """The core function of `canon resource.new`, `.rep` or `.drop` (`kind`, the definition's class name)."""
        table = state.table
        if kind == "CanonResourceNew":
            def adapter(slots):
                slots[0] = C.resource_new(table, rt, slots[0] & C.M32)
            sig = (("i32",), ("i32",))
        elif kind == "CanonResourceRep":
            def adapter(slots):
                slots[0] = C.resource_rep(table, rt, slots[0] & C.M32)
            sig = (("i32",), ("i32",))
        else:
            def adapter(slots):
                C.resource_drop(table, rt, slots[0] & C.M32)
            sig = (("i32",), ())
        return self.new_core_func(*sig, adapter, f"{kind} {rt.name}")

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
        return self.make_context(scope.get("core memory", opts.memory) if opts.memory is not None else None,
                                 scope.get("core func", opts.realloc) if opts.realloc is not None else None,
                                 opts.string_encoding, scope.state)  # type: ignore[arg-type]

    def make_context(self, memory: Any, realloc: Any, encoding: str, state: InstanceState) -> C.Context:
        mem = self.memory(memory) if memory is not None else None
        grow = None
        if realloc is not None:
            call = self.core_call(realloc, 4, 1)
            grow = lambda old, old_size, align, size: call([old, old_size, align, size])  # noqa: E731
        return C.Context(mem, grow, encoding, state.table, state)

    def _context_spec(self, opts: B.CanonOptions, scope: Scope) -> tuple:
        """The recorded form of `context(opts, scope)`: registers of the memory, realloc and state."""
        rec = self.rec
        assert rec is not None
        memory = None if opts.memory is None else rec.reg(scope.get("core memory", opts.memory))
        realloc = None if opts.realloc is None else rec.reg(scope.get("core func", opts.realloc))
        return (memory, realloc, opts.string_encoding, rec.reg(scope.state))

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
        shared = self.shared
        key = shared.key(t, scope)
        if key is None:
            return self._resolve_deftype(t, scope)
        found = shared.types.get(key)
        if found is not None:
            return found
        value = self._resolve_deftype(t, scope)
        return value if value is UNSERVED else shared.add(key, value)

    def _resolve_deftype(self, t: Any, scope: Scope) -> Any:
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
        if self.rec is not None:  # its type and every type holding it belong to this instance
            self._record(self._refuse, "the component defines its own resources")
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
        if self.rec is not None:
            self.rec.imports.append((name, type(impl)))
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
                    value = HostFunc(fn, ft, f"{name}#{decl.name}", (name, decl.name))
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
    B.AliasCoreExport: Runtime.alias_core_export,
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
