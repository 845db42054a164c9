"""What a host serves: every host interface class of `wasitls.wasi`, `wasitls.tls_interfaces` and
`wasitls.http`.

An interface of `wasi` is made with the guest's WasiCtx, one of `tls_interfaces` with its GuestTls, one
of `http` with its GuestHttp (`package_of` says which package a listed module belongs to).

Importing all of their modules (TLS and OpenSSL included) costs ~30 ms at each start, most of it for
interfaces a guest never imports. `interface_table` lists the classes (module, class name, WIT names)
from a small file in the compile cache when it matches the sources, so a host can register each
interface by name and import its module only when a guest imports it.
"""

from __future__ import annotations

import importlib
import os
import zlib
from pathlib import Path

from .component.compile_cache import CompileCache
from .component.linker import HostInterface

_HERE = os.path.dirname(os.path.abspath(__file__))
# the packages whose `interfaces()` list what we serve, and the source trees the list depends on
PACKAGES = ("wasi", "tls_interfaces", "http")


def all_interfaces() -> list[type[HostInterface]]:
    """Every host interface class, imported, in registration order."""
    found: list[type[HostInterface]] = []
    for package in PACKAGES:
        found.extend(importlib.import_module(f"{__package__}.{package}").interfaces())
    return found


def interface_table(cache_dir: Path | None = None) -> list[tuple[str, str, tuple[str, ...]]]:
    """(module, class name, WIT names served) of each class of `all_interfaces()`, in its order.

    The cache file holds its key (the sources' paths, sizes, mtimes, inodes) on its first line, then
    one line per class: module, class name and names, separated by tabs; it is signed like every
    compile-cache file (it names modules to import).
    """
    path = key = None
    cache = CompileCache(cache_dir)
    if cache_dir is not None:
        key = _tree_key()
        path = cache_dir / f"interfaces-{zlib.crc32(key.encode()):08x}.txt"
        try:
            head, *lines = (cache.load_signed(path) or b"").decode().split("\n")
            if head == key:
                return [(m, c, tuple(names.split(" "))) for m, c, names in (ln.split("\t") for ln in lines if ln)]
        except ValueError:  # UnicodeDecodeError included
            pass
    table = [(cls.__module__, cls.__qualname__, (cls.wit, *cls.aliases)) for cls in all_interfaces()]
    if path is not None:
        text = "\n".join([key, *(f"{m}\t{c}\t{' '.join(names)}" for m, c, names in table)]) + "\n"
        cache.store_signed(path, text.encode())
    return table


def _tree_key() -> str:
    """What the table depends on: the packages' sources and the host base class, by path, size,
    mtime and inode (any edit, e.g. of wasi's MODULES list, changes the key)."""
    files = [os.path.join(_HERE, "served.py"), os.path.join(_HERE, "component", "linker.py"),
             os.path.join(_HERE, "component", "compile_cache.py")]  # a new file format changes the name
    for package in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(_HERE, package)):
            dirnames.sort()
            files.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    parts = []
    for f in files:
        st = os.stat(f)
        parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
    return " ".join(parts)


def package_of(module: str) -> str:
    """Which of PACKAGES a module of the table belongs to ("wasi", "tls_interfaces" or "http")."""
    return module[len(__package__) + 1:].partition(".")[0]


def load_interface(module: str, name: str) -> type[HostInterface]:
    return getattr(importlib.import_module(module), name)
