"""What runs when a guest ends: hooks any layer registers (close sockets, trace open TLS connections)."""

from __future__ import annotations

from typing import Callable


class Lifetime:
    """One guest's end-of-run hooks, run once by the host after the guest returns, exits or traps."""

    def __init__(self) -> None:
        self.hooks: list[Callable[[], None]] = []

    def at_end(self, hook: Callable[[], None]) -> None:
        self.hooks.append(hook)

    def end(self) -> None:
        """Runs every hook in registration order; one that raises does not stop the others."""
        hooks, self.hooks[:] = list(self.hooks), []
        for hook in hooks:
            try:
                hook()
            except Exception:  # a hook's failure must not hide the guest's exit status
                pass
