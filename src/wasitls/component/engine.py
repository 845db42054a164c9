"""What every engine offers the host: load a component, link it to host interfaces, call exports.

Two engines implement it: `reference` (wasmtime-py's component API) and `fast` (our own canonical
ABI over wasmtime's core API). The WASI and TLS code is the same for both.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any, Callable

from .host import HostLinker


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


class WasmFile:
    """A component file, opened but read (and hashed) only if the compile cache cannot answer without it.

    Reading and hashing an 18 MB componentize-py guest costs ~25 ms of every start; the cache
    remembers each file's content hash under its identity (see `CompileCache.digest`), so a second
    start of an unchanged file reads neither.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.file = open(self.path, "rb")  # errors (missing, a directory, no permission) surface here
        try:
            st = os.fstat(self.file.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(21, "Is a directory", self.path)
        except BaseException:
            self.file.close()
            raise
        self.stat = st
        self._data: bytes | None = None

    def read(self) -> bytes:
        if self._data is None:
            self.file.seek(0)
            self._data = self.file.read()
        return self._data

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "WasmFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _sha256(data: bytes) -> Any:
    import hashlib  # imported here: loading OpenSSL's libcrypto for it costs ~2 ms of every start

    return hashlib.sha256(data)


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# a file whose status changed less than this long ago may still change within the same clock tick:
# its hash is not remembered (git's "racy clean" rule)
_SETTLED_NS = 2_000_000_000


class CompileCache:
    """Compiled code on disk, keyed by content hash and engine version; None dir means disabled."""

    def __init__(self, directory: Path | None):
        self.directory = directory

    @classmethod
    def default(cls) -> "CompileCache":
        if os.environ.get("WASITLS_NO_CACHE"):
            return cls(None)
        root = os.environ.get("WASITLS_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wasitls", "compiled"
        )
        return cls(Path(root))

    def path_for(self, wasm: bytes | WasmFile, kind: str, version: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{kind}-{version}-{self.digest(wasm)}.bin"

    def digest(self, wasm: bytes | WasmFile) -> str:
        """sha256 of the content. For a file, remembered under its identity (device, inode, size,
        mtime, ctime): any write changes ctime, which no one can set back, so an unchanged identity
        means unchanged bytes once the file has settled."""
        if not isinstance(wasm, WasmFile):
            return _sha256(wasm).hexdigest()
        if self.directory is None:
            return _sha256(wasm.read()).hexdigest()
        ident = _identity(wasm.stat)
        memo = self.directory / "digests" / "-".join(f"{v:x}" for v in ident)
        try:
            digest = memo.read_text()
            if len(digest) == 64:
                return digest
        except OSError:
            pass
        digest = _sha256(wasm.read()).hexdigest()
        try:
            after = os.stat(wasm.path)
        except OSError:
            return digest
        if _identity(after) == ident and time.time_ns() - after.st_ctime_ns > _SETTLED_NS:
            self.store(memo, digest.encode())
        return digest

    def load(self, path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    def store(self, path: Path | None, data: bytes) -> None:
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache we cannot write only costs a recompile next time


Progress = Callable[[str], None]


class Engine:
    name = "abstract"

    def load(self, wasm: bytes | WasmFile, *, cache: CompileCache,
             progress: Progress | None = None) -> "LoadedComponent":
        """`wasm` is the component's bytes, or a WasmFile an engine reads only when its cache misses."""
        raise NotImplementedError


class LoadedComponent:
    def imported_instances(self) -> list[str]:
        """Names of the instances the component imports, e.g. 'wasi:io/streams@0.2.9'."""
        raise NotImplementedError

    def exported_interfaces(self) -> list[str]:
        """Names of the instances the component exports, e.g. 'wasi:cli/run@0.2.3', in its order."""
        raise NotImplementedError

    def instantiate(self, linker: HostLinker) -> "ComponentInstance":
        """Links every import to a host interface; raises UnservedImports listing all that are missing."""
        raise NotImplementedError


class ComponentInstance:
    def call(self, interface: str | None, func: str, *args: Any) -> Any:
        """Calls an exported function (`interface` None for a top-level export); plain values in and out.

        A trap raises GuestTrap; wasi:cli/exit's GuestExit propagates unchanged.
        """
        raise NotImplementedError
