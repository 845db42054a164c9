"""What the component runtime raises to the host: one clear line each."""

from __future__ import annotations


class ComponentError(Exception):
    """The file is not a component we can run (malformed, unsupported feature, ...): one clear line."""


class UnservedImports(ComponentError):
    def __init__(self, names: list[str]):
        self.names = sorted(names)
        super().__init__("component imports interfaces this host does not serve: " + ", ".join(self.names))


class GuestTrap(Exception):
    """The guest trapped; the message names the trap in one line."""

    @property
    def status(self) -> int:
        """The exit status `wasmtime run` gives it: 128 + SIGABRT (134) for a trap in wasm code (its message
        starts "wasm trap:"), 1 for an error raised by a host call (a canonical ABI violation, a broken WASI
        precondition such as writing past check-write), which wasmtime reports as a plain error."""
        return 134 if str(self).startswith("wasm trap") else 1
