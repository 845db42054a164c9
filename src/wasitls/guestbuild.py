"""Build componentize-py guests against the vendored WIT, cached by content.

A guest is a directory holding a Python app module (``app.py`` by default) and its own
``wit/`` (one package whose worlds name the standard packages by version).  The builder
assembles ``wit/deps/`` from the WIT vendored in :mod:`wasitls` and runs::

    componentize-py -d WIT -w WORLD --features tls componentize -p APP [-p LIB ...] app -o out.wasm

Modules several guests share sit in a directory of their own, given as an extra Python path entry.

The result lands in ``$WASITLS_GUEST_CACHE`` (default ``$XDG_CACHE_HOME/wasitls/guests``,
or ``~/.cache/wasitls/guests``) under a name keyed by a hash of everything that shapes it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = ["GuestBuildError", "build_guest", "build_app", "guest_cache_dir", "assemble_wit", "VENDORED_WIT"]

VENDORED_WIT = Path(__file__).resolve().parent / "wit"
WASI_VERSION = "0.2.9"
WASI_PACKAGES = VENDORED_WIT / f"wasi-{WASI_VERSION}"
WASI_TLS_PACKAGE = VENDORED_WIT / "wasi-tls-0.2.0-draft"
WASITLS_TLS_PACKAGE = VENDORED_WIT / "wasitls-tls-0.1.0"  # the full draft API, as we serve it

# Bump when the assembled layout or the command line changes, so old cache entries are not reused.
_BUILDER_FORMAT = "2"
_SKIP_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_USE_VERSION = re.compile(r"^(\s*use\s+wasi:[\w-]+/[\w-]+)@0\.2\.\d+", re.MULTILINE)


class GuestBuildError(RuntimeError):
    """componentize-py failed; the message carries its output."""


def guest_cache_dir() -> Path:
    """Where built guests are kept: ``$WASITLS_GUEST_CACHE``, else the user's cache dir."""
    override = os.environ.get("WASITLS_GUEST_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wasitls" / "guests"


def assemble_wit(guest_wit: Path, dest: Path, extra_packages: Sequence[Path] = ()) -> Path:
    """Lay out ``dest`` as a WIT dir: the guest's own package, with every vendored package in deps/.

    componentize-py 0.25.1 (wit-parser) takes a directory with the root package's ``*.wit``
    files and one sub-directory per dependency package under ``deps/``.
    """
    shutil.copytree(guest_wit, dest, ignore=shutil.ignore_patterns(*_SKIP_NAMES))
    deps = dest / "deps"
    deps.mkdir(exist_ok=True)
    for package in sorted(WASI_PACKAGES.iterdir()):
        if package.is_dir() and not (deps / package.name).exists():
            shutil.copytree(package, deps / package.name)
    tls = deps / "tls"
    if not tls.exists():
        tls.mkdir()
        for wit in sorted(WASI_TLS_PACKAGE.glob("*.wit")):
            # The draft names wasi:io@0.2.6; one resolve must hold one wasi:io, so point it at ours.
            text = _USE_VERSION.sub(rf"\1@{WASI_VERSION}", wit.read_text())
            (tls / wit.name).write_text(text)
    if not (deps / WASITLS_TLS_PACKAGE.name).exists():
        shutil.copytree(WASITLS_TLS_PACKAGE, deps / WASITLS_TLS_PACKAGE.name)
    for package in extra_packages:
        target = deps / Path(package).name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(package, target, ignore=shutil.ignore_patterns(*_SKIP_NAMES))
    return dest


def _walk_files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_NAMES)
        for name in sorted(filenames):
            if not name.endswith((".pyc", ".wasm")):
                yield Path(dirpath) / name


def _hash_tree(h: "hashlib._Hash", label: str, root: Path) -> None:
    for path in _walk_files(root):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        h.update(f"{label}:{rel}:{len(data)}\n".encode())
        h.update(data)


def build_once(out: Path, build: Callable[[Path], None], *, partial_suffix: str = ".partial") -> Path:
    """`out`, a build named by the digest of its inputs: made by `build(partial)` unless it exists.

    One builder per name at a time (a waiter then finds the finished file); `build` writes to a
    temporary name that becomes `out` only once it succeeded, so no one sees a half-written file.
    `build` raises when its tool failed; what it left is removed."""
    if out.exists():
        return out
    with open(out.with_name(f".{out.stem}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.exists():
            return out
        partial = out.with_name(f".{out.stem}.{os.getpid()}{partial_suffix}")
        try:
            build(partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, out)
    return out


def _componentize_py_version() -> str:
    return importlib.metadata.version("componentize-py")


def _componentize_command() -> list[str]:
    # The package has no __main__; call its console-script entry point with this interpreter.
    return [sys.executable, "-c", "import sys, componentize_py; sys.exit(componentize_py.script())"]


def _hermetic_env(tmp: Path) -> dict[str, str]:
    """componentize-py appends a site-packages to its path: $VIRTUAL_ENV's, else pipenv's, else the
    `python3` on PATH's. Point it at an empty one, so a guest holds only what its -p paths give
    (all of them hashed into the cache key), never whatever the builder's Python has installed."""
    empty = tmp / "no-venv"
    (empty / "lib" / "site-packages").mkdir(parents=True, exist_ok=True)
    return {**os.environ, "VIRTUAL_ENV": str(empty)}


def build_guest(
    source_dir: Path,
    world: str,
    wit_dirs: Sequence[Path] = (),
    *,
    python_path: Sequence[Path] = (),
    features: Sequence[str] = ("tls",),
    app: str = "app",
    progress: Callable[[str], None] | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Build (or fetch from the cache) the component for the guest in ``source_dir``.

    ``source_dir`` holds the app module and ``wit/``; ``wit_dirs`` are extra WIT package
    directories placed under ``deps/`` beside the vendored ones; ``python_path`` are directories of
    modules shared by several guests, searched after ``source_dir``.  Returns the ``.wasm`` path.
    """
    source_dir = Path(source_dir).resolve()
    guest_wit = source_dir / "wit"
    if not guest_wit.is_dir():
        raise GuestBuildError(f"{source_dir} has no wit/ directory")
    # The world says what a guest is better than its directory (the demo's is just "guest").
    name = re.sub(r"[^A-Za-z0-9_-]", "_", re.split(r"[:/]", world)[-1].split("@")[0])
    cache = Path(cache_dir) if cache_dir is not None else guest_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix=f"wasitls-guest-{name}-") as tmp:
        tmp_path = Path(tmp)
        wit = assemble_wit(guest_wit, tmp_path / "wit", wit_dirs)
        app_dir = tmp_path / "app"
        # Build from a copy so componentize-py's __pycache__ never lands in the source tree.
        shutil.copytree(source_dir, app_dir, ignore=shutil.ignore_patterns("wit", *_SKIP_NAMES))
        lib_dirs = [tmp_path / f"lib{i}" for i in range(len(python_path))]
        for lib, lib_dir in zip(python_path, lib_dirs):
            shutil.copytree(lib, lib_dir, ignore=shutil.ignore_patterns(*_SKIP_NAMES))

        h = hashlib.sha256()
        h.update(f"wasitls-guest:{_BUILDER_FORMAT}\ncomponentize-py:{_componentize_py_version()}\n".encode())
        h.update(f"world:{world}\napp:{app}\nfeatures:{','.join(sorted(features))}\n".encode())
        _hash_tree(h, "src", app_dir)
        # Only when given, so the key of a guest without shared modules is what it always was.
        for i, lib_dir in enumerate(lib_dirs):
            _hash_tree(h, f"lib{i}", lib_dir)
        _hash_tree(h, "wit", wit)
        out = cache / f"{name}-{h.hexdigest()[:24]}.wasm"

        def build(partial: Path) -> None:
            if progress is not None:
                progress(f"building guest {name!r} with componentize-py (first run only, ~15 s)…")
            started = time.monotonic()
            cmd = _componentize_command() + ["-q", "-d", str(wit), "-w", world]
            if features:
                cmd += ["--features", ",".join(features)]
            cmd += ["componentize", "-p", str(app_dir)]
            for lib_dir in lib_dirs:
                cmd += ["-p", str(lib_dir)]
            cmd += [app, "-o", str(partial)]
            proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=_hermetic_env(tmp_path))
            if proc.returncode != 0 or not partial.exists():
                # componentize-py appends a Rust backtrace that says nothing about the guest.
                output = (proc.stdout + proc.stderr).split("Stack backtrace:")[0].strip()
                raise GuestBuildError(f"componentize-py failed for guest {name!r} (exit {proc.returncode}):\n{output}")
            if progress is not None:
                progress(f"built guest {name!r} in {time.monotonic() - started:.1f} s: {out}")

        return build_once(out, build)


# -- `wasitls build`: a Python guest from an app module, with the host-TLS ssl module -------------------

GUEST_PYTHON = Path(__file__).resolve().parent / "guest_python"  # guest/python: _ssl over wasitls:tls/memory

_APP_WORLD = """package wasitls-app:{name};

/// Written by `wasitls build`: WASI 0.2, wasi:tls, wasitls:tls (the draft API, host-held identities,
/// TLS over memory for the ssl module).
world app {{
  include wasi:cli/imports@{wasi};
  import wasi:tls/types@0.2.0-draft;
  import wasitls:tls/tls@0.1.0;
  import wasitls:tls/identities@0.1.0;
  import wasitls:tls/memory@0.1.0;
  export wasi:cli/run@{wasi};
}}
"""

# The component's entry point. The app module is imported when the component is built, so that it
# and what it imports are in the snapshot; its work runs when the component runs: its `Run` class
# (componentize-py's own form), else its `main()`, else its body again as `__main__`.
_ENTRY = '''"""Written by `wasitls build`: runs the app module {module!r}."""

import encodings.idna  # noqa: F401 (host names are encoded as IDNA at run time; the snapshot must hold it)
import importlib
import sys
import traceback

import _wasitls_compat
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, exit as wasi_exit

_APP = {module!r}
with _wasitls_compat.no_sockets_while_building():
    _app = importlib.import_module(_APP)
# The app's body as code, for apps without Run or main(): its source file is not there at run time.
_code = None if hasattr(_app, "Run") or hasattr(_app, "main") else _app.__spec__.loader.get_code(_APP)


class Run(exports.Run):
    def run(self) -> None:
        inner = getattr(_app, "Run", None)
        if isinstance(inner, type):
            return inner().run()
        sys.argv = list(environment.get_arguments()) or [_APP]
        _wasitls_compat.apply()
        status = 0
        try:
            main = getattr(_app, "main", None)
            if callable(main):
                result = main()
                status = result if isinstance(result, int) else 0
            else:
                exec(_code, {{"__name__": "__main__", "__file__": _app.__file__, "__builtins__": __builtins__}})
        except SystemExit as e:
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
            status = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        if status:
            wasi_exit.exit(Err(None))
'''


def build_app(
    app: str | Path,
    output: str | Path,
    python_path: Sequence[str | Path] = (),
    *,
    progress: Callable[[str], None] | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """`wasitls build`: a command component from a Python app module.

    ``app`` is a ``.py`` file (its directory is searched first) or a module name found on
    ``python_path``. The component imports WASI 0.2, wasi:tls and all of wasitls:tls, and carries
    guest/python (``ssl`` done by the host) after the given paths. Third-party packages come only
    from ``python_path`` (e.g. ``pip install --target DIR requests``), never from the builder's
    own site-packages. Cached by content like ``build_guest``; the result is copied to ``output``.
    """
    paths = [Path(p) for p in python_path]
    app_path = Path(app)
    if app_path.suffix == ".py":
        if not app_path.is_file():
            raise GuestBuildError(f"{app}: no such file")
        module = app_path.stem
        paths.insert(0, app_path.resolve().parent)
    else:
        module = str(app)
        if not re.fullmatch(r"[A-Za-z_][\w.]*", module):
            raise GuestBuildError(f"{app}: neither a .py file nor a module name")
        found = any((p / (module.replace(".", "/") + ".py")).is_file()
                    or (p / module.replace(".", "/") / "__init__.py").is_file() for p in paths)
        if not found:
            raise GuestBuildError(f"module {module!r} is in none of the -p paths ({', '.join(map(str, paths)) or 'none given'})")
    for p in paths:
        if not p.is_dir():
            raise GuestBuildError(f"-p {p}: not a directory")
    name = re.sub(r"[^a-z0-9-]", "-", module.split(".")[-1].lower()).strip("-") or "app"
    with tempfile.TemporaryDirectory(prefix="wasitls-app-") as tmp:
        source = Path(tmp) / "entry"
        (source / "wit").mkdir(parents=True)
        (source / "wit" / "world.wit").write_text(_APP_WORLD.format(name=name, wasi=WASI_VERSION))
        (source / "wasitls_entry.py").write_text(_ENTRY.format(module=module))
        built = build_guest(source, "app", app="wasitls_entry", progress=progress, cache_dir=cache_dir,
                            python_path=[*paths, GUEST_PYTHON])
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built, output)
    return output
