"""The instantiation plan of a loaded component: its first instantiation, recorded, replayed for the next.

Walking a component's definitions resolves thousands of aliases, types and bags of core exports that
come out the same for every instance (a componentize-py guest has about 1,200 aliases and 60 bags).
What differs per instance is only what lives in its store or its host context: core instances and the
exports taken from them, host functions made by `canon lower`, functions made by `canon lift`, the
per-component-instance state, and the host objects serving its imports. The first walk records those
steps, each naming earlier results by register; every later instance runs only the steps
(`Runtime.replay`): half the walk's time for componentize-py, a third for componentize-js
(bench/instantiate.py).

A component the plan cannot describe exactly (one that defines its own resources, or exports something
whose value is not shared across instances) gets no plan: every instance is walked, as before.
"""

from __future__ import annotations

from typing import Any, Callable


class NotPlannable(Exception):
    """The walk met something the plan cannot replay (the message says what)."""


# steps, each a tuple whose first item is its kind; registers (r...) index the replay's value list
STATE = "state"        # (STATE, r, name): a component instance's state (handle table, entry flags)
INSTANCE = "instance"  # (INSTANCE, r, compiled module, [r of each import])
EXPORTS = "exports"    # (EXPORTS, r of core instance, [(utf-8 name, r), ...]): exports taken from it
LOWER = "lower"        # (LOWER, r, params, results, ft, callee, context spec, label)
RESOURCE = "resource"  # (RESOURCE, r, kind, resource type, r of state)
LIFT = "lift"          # (LIFT, r, ft, r of core func, nparams, nresults, r of post-return | None, spec, label)
# a callee is ("host", import name, function name) or ("lifted", r); a context spec is
# (r of memory | None, r of realloc | None, string encoding, r of state)


class Recorder:
    """Kept by a Runtime during the walk it records: every store-bound value gets a register."""

    def __init__(self, shared_ids: set[int]) -> None:
        self.shared_ids = shared_ids  # ids of the types shared by every instance (SharedTypes.ids)
        self.steps: list[tuple] = []
        self.regs: dict[int, int] = {}  # id(value) -> register
        self.values: list[Any] = []  # keeps every registered value alive, so its id stays its own
        self.imports: list[tuple[str, type]] = []  # the imported instances resolved, with their host class

    def new(self, value: Any) -> int:
        r = len(self.values)
        self.values.append(value)
        self.regs[id(value)] = r
        return r

    def reg(self, value: Any) -> int:
        r = self.regs.get(id(value))
        if r is None:
            raise NotPlannable(f"a value not made by a recorded step: {type(value).__name__}")
        return r

    def constant(self, value: Any, what: str) -> Any:
        if id(value) not in self.shared_ids:
            raise NotPlannable(f"{what} is not shared by every instance")
        return value

    def state(self, value: Any, name: str) -> None:
        self.steps.append((STATE, self.new(value), name))

    def instance(self, value: Any, compiled: Any, externs: list[Any]) -> None:
        self.steps.append((INSTANCE, self.new(value), compiled, [self.reg(e) for e in externs]))

    def export_taken(self, instance: Any, name: str, value: Any) -> None:
        """A core export looked up by name: recorded once per (instance, name)."""
        if id(value) not in self.regs:
            self.steps.append((EXPORTS, self.reg(instance), [(name.encode("utf-8"), self.new(value))]))

    def lower(self, value: Any, params: tuple, results: tuple, ft: Any, callee: tuple, spec: tuple,
              label: str) -> None:
        self.steps.append((LOWER, self.new(value), params, results, self.constant(ft, "a lowered function's type"),
                           callee, spec, label))

    def resource(self, value: Any, kind: str, rt: Any, state: Any) -> None:
        self.steps.append((RESOURCE, self.new(value), kind, self.constant(rt, "a resource type"), self.reg(state)))

    def lift(self, value: Any, ft: Any, func: Any, nparams: int, nresults: int, post_return: Any,
             spec: tuple) -> None:
        self.steps.append((LIFT, self.new(value), self.constant(ft, "a lifted function's type"), self.reg(func),
                           nparams, nresults, None if post_return is None else self.reg(post_return), spec,
                           value.label))

    def finish(self, root: Any) -> "Plan":
        from .runtime import InstanceValue

        def template(value: Any) -> tuple:
            if isinstance(value, InstanceValue):
                return ("instance", value.name, {k: (sort, template(v)) for k, (sort, v) in value.exports.items()})
            r = self.regs.get(id(value))
            if r is not None:
                return ("reg", r)
            return ("const", self.constant(value, f"an export ({type(value).__name__})"))

        exports = template(root)
        used = set(_template_regs(exports))
        for step in self.steps:
            used.update(_step_regs(step))
        # a core instance's exports are taken right after it is made, in one step, and only those used
        taken: dict[int, list[tuple[bytes, int]]] = {}
        for step in self.steps:
            if step[0] == EXPORTS:
                taken.setdefault(step[1], []).extend((raw, r) for raw, r in step[2] if r in used)
        steps = []
        for step in self.steps:
            if step[0] == EXPORTS:
                continue
            if step[0] == LIFT:  # `export` renames a lifted function after the step made it
                step = step[:-1] + (self.values[step[1]].label,)
            steps.append(step)
            if step[0] == INSTANCE and taken.get(step[1]):
                steps.append((EXPORTS, step[1], taken[step[1]]))
        return Plan(steps, len(self.values), tuple(self.imports), exports)


def _spec_regs(spec: tuple) -> list[int]:
    return [r for r in (spec[0], spec[1], spec[3]) if r is not None]


def _step_regs(step: tuple) -> list[int]:
    """The registers a step reads."""
    kind = step[0]
    if kind == INSTANCE:
        return step[3]
    if kind == LOWER:
        return ([step[5][1]] if step[5][0] == "lifted" else []) + _spec_regs(step[6])
    if kind == RESOURCE:
        return [step[4]]
    if kind == LIFT:
        return [step[3]] + ([step[6]] if step[6] is not None else []) + _spec_regs(step[7])
    return []


def _template_regs(t: tuple) -> list[int]:
    if t[0] == "reg":
        return [t[1]]
    if t[0] == "instance":
        return [r for _, v in t[2].values() for r in _template_regs(v)]
    return []


class Plan:
    """What `Runtime.replay` runs: the steps, how many registers, the imports, the exports' shape."""

    __slots__ = ("steps", "nregs", "imports", "exports")

    def __init__(self, steps: list[tuple], nregs: int, imports: tuple[tuple[str, type], ...], exports: tuple):
        self.steps = steps
        self.nregs = nregs
        self.imports = imports
        self.exports = exports

    def build_exports(self, values: list[Any], make_instance: Callable[[dict, str], Any]) -> Any:
        return _build(self.exports, values, make_instance)


def _build(t: tuple, values: list[Any], make_instance: Callable[[dict, str], Any]) -> Any:
    # a function of its own, not a closure calling itself: that would be a cycle holding `values`
    kind = t[0]
    if kind == "reg":
        return values[t[1]]
    if kind == "const":
        return t[1]
    return make_instance({k: (sort, _build(v, values, make_instance)) for k, (sort, v) in t[2].items()}, t[1])
