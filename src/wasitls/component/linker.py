"""Host interfaces as component backends see them: a WIT interface name, its functions and resource classes.

A host interface is a Python object (one per running component) whose class says which WIT interface
it implements. A backend asks `HostLinker.resolve` for the object serving an imported interface
name, then `host_function` for each imported function; the WIT function names map to Python as:

    f                    interface.f(*args)                       (dashes become underscores)
    [constructor]r       interface.new_r(*args)                   returns the new resource object
    [method]r.f          obj.f(*args)                             obj: the `self` handle's object
    [static]r.f          interface.r_f(*args)
    [resource-drop]r     obj.drop()                               if the class defines it

Values follow `values.py`. A backend knows nothing of what an interface does.
"""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any, Callable, ClassVar, Iterable

_NAME = re.compile(r"^(?P<base>[a-z0-9-]+:[a-z0-9-]+(?:/[a-z0-9-]+)?)(?:@(?P<version>[0-9A-Za-z.+-]+))?$")


def py_name(wit_name: str) -> str:
    return wit_name.replace("-", "_")


class HostInterface:
    """Base class: subclasses set `wit` ("wasi:io/streams@0.2.9") and `resources`."""

    wit: ClassVar[str] = ""
    # other names this implementation serves, e.g. "wasi:tls/types@0.2.0-draft" under 0.2.9 streams
    aliases: ClassVar[tuple[str, ...]] = ()
    # the resources this interface defines (not those it `use`s): WIT name -> class of its objects
    resources: ClassVar[dict[str, type]] = {}


def interfaces_in(package: str, modules: Iterable[str]) -> list[type[HostInterface]]:
    """Every host interface class (one with a `wit` name) that the given modules of `package` define, in order."""
    found: list[type[HostInterface]] = []
    for name in modules:
        module = importlib.import_module(f"{package}.{name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, HostInterface) and obj.wit
                    and obj.__module__ == module.__name__):
                found.append(obj)
    return found


@functools.lru_cache(maxsize=1024)  # the same few names, for every instance a server makes
def split_name(name: str) -> tuple[str, str | None]:
    """'wasi:io/streams@0.2.9' -> ('wasi:io/streams', '0.2.9')."""
    m = _NAME.match(name)
    if not m:
        return name, None
    return m.group("base"), m.group("version")


def _semver_key(version: str) -> tuple[int, ...] | None:
    """The part of a version that must match for two versions to be compatible (wasmtime's rule)."""
    core, _, pre = version.partition("-")
    parts = core.split(".")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        return None
    if pre or len(nums) != 3:
        return tuple(nums) + (hash(pre),)  # a pre-release only matches itself
    major, minor, patch = nums
    if major:
        return (major,)
    if minor:
        return (0, minor)
    return (0, 0, patch)


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.partition("-")[0].split("."))
    except ValueError:
        return (0,)


class _Deferred:
    """An implementation made on first use (one object for all the names it is registered under)."""

    __slots__ = ("factory", "value")

    def __init__(self, factory: Callable[[], Any]):
        self.factory = factory
        self.value: Any = None

    def get(self) -> Any:
        if self.value is None:
            self.value = self.factory()
        return self.value


class HostLinker:
    """Host interfaces by name; an import links to the registered version compatible with it."""

    def __init__(self, choices: dict[str, tuple[str, int] | None] | None = None) -> None:
        self._by_base: dict[str, list[tuple[str | None, Any]]] = {}
        # import name -> (base, index in _by_base[base]) of the registration it resolved to; may be shared
        # by linkers registered alike (a host makes one per instance: `wasitls serve`, one per request)
        self._choices = {} if choices is None else choices

    def register(self, impl: HostInterface, *names: str) -> None:
        for name in names or (impl.wit, *impl.aliases):
            base, version = split_name(name)
            self._by_base.setdefault(base, []).append((version, impl))

    def register_deferred(self, names: Iterable[str], factory: Callable[[], Any]) -> None:
        """Serve `names` by the object `factory()` returns, made only if a component imports one of them
        (so a guest that does not import, say, wasi:tls never loads the code behind it)."""
        deferred = _Deferred(factory)
        for name in names:
            base, version = split_name(name)
            self._by_base.setdefault(base, []).append((version, deferred))

    def resolve(self, import_name: str) -> Any | None:
        choice = self._choices.get(import_name, False)
        if choice is False:
            choice = self._choices[import_name] = self._choose(import_name)
        if choice is None:
            return None
        impl = self._by_base[choice[0]][choice[1]][1]
        return impl.get() if isinstance(impl, _Deferred) else impl

    def _choose(self, import_name: str) -> tuple[str, int] | None:
        base, version = split_name(import_name)
        candidates = self._by_base.get(base, [])
        if not candidates:
            return None
        if version is None:
            return base, len(candidates) - 1
        for i, (v, _) in enumerate(candidates):
            if v == version:
                return base, i
        key = _semver_key(version)
        compatible = [(_version_tuple(v), i) for i, (v, _) in enumerate(candidates)
                      if v is not None and _semver_key(v) == key]
        if not compatible:
            return None
        return base, max(compatible, key=lambda c: c[0])[1]

    def names(self) -> Iterable[str]:
        for base, entries in self._by_base.items():
            for version, _ in entries:
                yield f"{base}@{version}" if version else base


def resource_class(impl: Any, resource: str) -> type | None:
    return type(impl).resources.get(resource)


def host_function(impl: Any, func_name: str) -> Callable[..., Any] | None:
    """The Python callable for an imported WIT function, or None if the interface lacks it.

    For `[method]` the callable takes the `self` object first; `[resource-drop]` is not a function
    here (backends call `drop_object`).
    """
    if func_name.startswith("[constructor]"):
        return getattr(impl, "new_" + py_name(func_name[len("[constructor]"):]), None)
    if func_name.startswith("[method]"):
        resource, _, method = func_name[len("[method]"):].partition(".")
        cls = resource_class(impl, resource)
        if cls is None:
            return None
        return getattr(cls, py_name(method), None)
    if func_name.startswith("[static]"):
        resource, _, method = func_name[len("[static]"):].partition(".")
        return getattr(impl, py_name(resource) + "_" + py_name(method), None)
    if func_name.startswith("["):
        return None
    return getattr(impl, py_name(func_name), None)


def drop_object(obj: Any) -> None:
    """Called when the guest drops its last handle to a host resource."""
    drop = getattr(obj, "drop", None)
    if drop is not None:
        drop()
