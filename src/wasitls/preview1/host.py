"""`Host.run` for a preview-1 module: the same options, context and exit rules as for components."""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

from ..component.engine import ComponentError, WasmFile


def run_preview1(host: Any, module: str | os.PathLike | bytes, args: Iterable[str], argv0: str | None) -> int:
    from ..host import HostError
    from .module import load_module, run_command

    if isinstance(module, (bytes, bytearray)):
        wasm: bytes | WasmFile = bytes(module)
    else:
        try:
            wasm = WasmFile(module)
        except OSError as e:
            raise HostError(f"cannot read {module}: {e.strerror}") from None
    try:
        loaded = load_module(_engine(host), wasm, host.cache, host.progress)
    except ComponentError as e:
        raise HostError(f"{module if not isinstance(module, bytes) else 'module'}: {e}") from None
    finally:
        if isinstance(wasm, WasmFile):
            wasm.close()
    if argv0 is None:
        argv0 = "module.wasm" if isinstance(module, (bytes, bytearray)) else os.path.basename(os.fspath(module))
    ctx = host._ctx([argv0, *args])
    warn = host.progress or (lambda line: print(f"wasitls: {line}", file=sys.stderr, flush=True))
    try:
        return run_command(loaded, ctx, lambda line: warn(f"warning: {line}"))
    except ComponentError as e:
        raise HostError(f"{module if not isinstance(module, bytes) else 'module'}: {e}") from None
    finally:
        for closer in ctx.extras.get("closers", []):
            try:
                closer()
            except Exception:  # noqa: BLE001 - one failing closer must not hide the others or the status
                pass


def _engine(host: Any) -> Any:
    """The wasmtime engine of the host's component engine, shared (its compiled code caches with it)."""
    import wasmtime

    engine = getattr(host.engine, "wt_engine", None)
    if engine is None:
        engine = getattr(host, "_p1_engine", None)
        if engine is None:
            engine = host._p1_engine = wasmtime.Engine()
    return engine
