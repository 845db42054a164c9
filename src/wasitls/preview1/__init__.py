"""WASI preview 1 (wasi_snapshot_preview1) for core modules, the socket extension and hTLS.

A translation layer over the objects wasi/ already has, as wasmtime's p1.rs is over its preview 2:
    witx.py                     the witx types: errno, flags, rights, layouts
    abi.py                      raw core parameters in, errno out; guest memory access
    fds.py                      the descriptor table: stdio, files and directories
    wasi_snapshot_preview1.py   every function of the witx, in its order
    sockets.py                  the WasmEdge/Timecraft socket extension and hTLS
    module.py                   compile (cached), link, run `_start`
"""

from .module import load_module, run_command, run_module

__all__ = ["load_module", "run_command", "run_module"]
