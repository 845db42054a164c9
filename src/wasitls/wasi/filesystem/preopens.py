"""wasi:filesystem/preopens@0.2.9: the directories the policy grants, as descriptors."""

from __future__ import annotations

from typing import Any

from ...component.linker import HostInterface
from .types import Descriptor


class Preopens(HostInterface):
    wit = "wasi:filesystem/preopens@0.2.9"
    # descriptor is defined by wasi:filesystem/types; this interface only `use`s it

    def __init__(self, ctx: Any = None):
        self.ctx = ctx
        # Opened once, as wasmtime does when it builds the context: every get-directories hands out
        # descriptors on these same directories, even if their host paths are renamed meanwhile.
        preopens = ctx.policy.preopens if ctx is not None else ()
        self._dirs = [(Descriptor.open_preopen(p.host_path), p.guest_path) for p in preopens]

    def get_directories(self) -> list[tuple[Descriptor, str]]:
        return [(Descriptor(d.handle.retain(), is_dir=True, perms=d.perms, file_perms=d.file_perms,
                            open_mode=d.open_mode), guest_path)
                for d, guest_path in self._dirs]
