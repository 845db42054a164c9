"""The tests' names for the checkout's guest builders and the wasmtime CLI, which live in wasitls.devtools
(the benchmarks use them too)."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import wasitls.devtools  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from wasitls.devtools import (GUEST_LIB, GUESTS_DIR, JS_INSTALL_HINT, WASMTIME_INSTALL_HINT,  # noqa: E402
                              build_js_guest, build_test_guest, find_jco, find_wasmtime_cli, guest_world,
                              jstools_dir, wasmtime_precompiled)

__all__ = [
    "GUESTS_DIR",
    "GUEST_LIB",
    "JS_INSTALL_HINT",
    "WASMTIME_INSTALL_HINT",
    "build_js_guest",
    "build_test_guest",
    "find_jco",
    "find_wasmtime_cli",
    "guest_world",
    "jstools_dir",
    "wasmtime_precompiled",
]
