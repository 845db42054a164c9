"""Compiled code on disk, so that only a component's first start pays for compiling it.

Entries are keyed by content hash and wasmtime version. wasmtime deserializes an entry as machine
code it trusts, so nothing is deserialized unless this user's key vouches for it:

  - the directory and every file in it are owner-only (0700 / 0600): one of ours that is open to
    others is closed, one (or a key file) owned by another user is not used, with one warning line;
  - a per-user secret key (`key`, 32 random bytes) is made in the directory on first use; every
    entry has a signature beside it (`NAME.sig`: its content digest and file identity, with a keyed
    BLAKE2b MAC over both), and the small files (index, digest memos, interface table) carry their
    MAC on their first line;
  - an entry whose signature does not verify is dropped and rebuilt, with one warning line; one with
    no signature (made by an older wasitls) is simply rebuilt;
  - the index that lets a second start skip parsing holds plain values only (lists, tuples, ints,
    strings, in `marshal`'s format because it reads ~2 ms faster than JSON at every start),
    read only once its MAC verifies, and rebuilt into the parser's own definition classes and nothing
    else: never pickle, so reading it cannot run code.

A large entry is not hashed at every start: its signature records the file's identity (device,
inode, size, mtime, ctime) and an unchanged identity means unchanged bytes (any write changes ctime,
which no one but root can set back). The cache directory must still be trusted: anyone who can read
the key can sign entries.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..inputfiles import COMPONENT_LIMIT, open_input, read_bounded
from . import binary as B

KEY_NAME = "key"
_KEY_SIZE = 32
_MAC_SIZE = 32  # bytes of BLAKE2b output, for signatures and content digests alike
INDEX_FORMAT = 1


def _blake2b(data: bytes = b"", key: bytes = b"") -> Any:
    try:
        from _blake2 import blake2b  # CPython's own BLAKE2: importing hashlib would load OpenSSL (~2 ms)
    except ImportError:  # pragma: no cover - other Pythons
        from hashlib import blake2b
    return blake2b(data, digest_size=_MAC_SIZE, key=key)


def _sha256(data: bytes) -> Any:
    import hashlib  # imported here: loading OpenSSL's libcrypto for it costs ~2 ms of every start

    return hashlib.sha256(data)


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _ident_text(st: os.stat_result) -> str:
    return "-".join(f"{v:x}" for v in _identity(st))


# a file whose status changed less than this long ago may still change within the same clock tick:
# its hash is not remembered (git's "racy clean" rule)
_SETTLED_NS = 2_000_000_000


class WasmFile:
    """A component file, opened but read (and hashed) only if the compile cache cannot answer without it.

    Reading and hashing an 18 MB componentize-py guest costs ~25 ms of every start; the cache
    remembers each file's content hash under its identity (see `CompileCache.digest`), so a second
    start of an unchanged file reads neither.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        # errors (missing, a directory, no permission, not a regular file, too large) surface here
        self.file, self.stat = open_input(self.path, COMPONENT_LIMIT)
        self._data: bytes | None = None

    def read(self) -> bytes:
        if self._data is None:
            self.file.seek(0)
            self._data = read_bounded(self.file, self.path, COMPONENT_LIMIT)
        return self._data

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "WasmFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _warn_stderr(line: str) -> None:
    print(f"wasitls: warning: {line}", file=sys.stderr, flush=True)


class CompileCache:
    """Compiled code on disk, keyed by content hash and wasmtime version; None dir means disabled."""

    # directories already warned about in this process: one line per run, whichever object finds it
    _warned: set[Path | None] = set()

    def __init__(self, directory: Path | None, warn: Callable[[str], None] = _warn_stderr):
        self.directory = directory
        self._warn = warn
        self._key: bytes | None = None
        self.resigned = False

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

    # -- the directory and its key ------------------------------------------------------------

    def _disable(self, why: str) -> None:
        self.warn_once(f"not using the compile cache {self.directory}: {why}")
        self.directory = None

    def key(self) -> bytes | None:
        """This user's signing key, made on first use; None (and the cache disabled) if the
        directory or the key cannot be trusted."""
        if self._key is not None or self.directory is None:
            return self._key
        d = self.directory
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.stat(d)
            if st.st_uid != os.geteuid():
                self._disable("it belongs to another user")
                return None
            if stat.S_IMODE(st.st_mode) & 0o077:
                os.chmod(d, 0o700)  # ours, but readable or writable by others: made owner-only
            path = d / KEY_NAME
            if not path.exists():
                # made whole under another name, then linked: a concurrent start never reads half a key
                tmp = d / f"{KEY_NAME}.tmp{os.getpid()}.{threading.get_ident()}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                try:
                    os.write(fd, os.urandom(_KEY_SIZE))
                finally:
                    os.close(fd)
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    pass  # another start made it first: theirs is the key
                finally:
                    os.unlink(tmp)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                kst = os.fstat(fd)
                if kst.st_uid != os.geteuid() or not stat.S_ISREG(kst.st_mode):
                    self._disable("its key file belongs to another user")
                    return None
                if stat.S_IMODE(kst.st_mode) & 0o077:
                    os.fchmod(fd, 0o600)
                key = os.read(fd, _KEY_SIZE + 1)
            finally:
                os.close(fd)
            if len(key) != _KEY_SIZE:
                self._disable("its key file is damaged (delete the directory to start afresh)")
                return None
        except OSError:
            self.directory = None  # cannot be made or read: as before, a cache we cannot use only costs a compile
            return None
        self._key = key
        return key

    def warn_once(self, line: str) -> None:
        """One warning line per run, however many entries turn out bad."""
        if self.directory not in CompileCache._warned:
            CompileCache._warned.add(self.directory)
            self._warn(line)

    def _mac(self, name: str, data: bytes) -> bytes:
        return _blake2b(name.encode() + b"\n" + data, key=self._key or b"").hexdigest().encode()

    def _damaged(self, path: Path) -> None:
        self.warn_once(f"compile cache entry {path.name} failed verification: dropped and rebuilt")
        self.drop(path)

    def drop(self, path: Path) -> None:
        for p in (path, _sig_path(path)):
            try:
                p.unlink()
            except OSError:
                pass

    # -- writing ------------------------------------------------------------------------------

    def _write(self, path: Path, data: bytes) -> os.stat_result:
        """Writes `data` to `path` atomically, owner-only; the identity of what was written."""
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return os.stat(path)

    def store(self, path: Path | None, data: bytes) -> None:
        """Stores an entry and its signature."""
        if path is None or self.key() is None:
            return
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = self._write(path, data)
            self._sign(path, _blake2b(data).hexdigest(), st)
        except OSError:
            pass  # a cache we cannot write only costs a recompile next time

    def _sign(self, path: Path, digest: str, st: os.stat_result) -> None:
        line = f"{digest} {_ident_text(st)}".encode()
        self._write(_sig_path(path), line + b"\n" + self._mac(path.name, line) + b"\n")

    def store_signed(self, path: Path | None, data: bytes) -> None:
        """Stores a small file with its MAC on the first line."""
        if path is None or self.key() is None:
            return
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._write(path, self._mac(path.name, data) + b"\n" + data)
        except OSError:
            pass

    # -- reading ------------------------------------------------------------------------------

    def load_signed(self, path: Path | None) -> bytes | None:
        """A small file written by `store_signed`, or None if absent, unreadable or not ours."""
        if path is None:
            return None
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        if self.key() is None:
            return None
        mac, sep, data = raw.partition(b"\n")
        if not sep or mac != self._mac(path.name, data):
            self._damaged(path)
            return None
        return data

    def signature(self, path: Path) -> tuple[str, str] | None:
        """(content digest, identity) from an entry's signature; None if it has none; drops the entry
        (with the warning) if the signature is not ours."""
        try:
            raw = _sig_path(path).read_bytes()
        except OSError:
            return None
        line, _, mac = raw.partition(b"\n")
        if mac.rstrip(b"\n") != self._mac(path.name, line) or line.count(b" ") != 1:
            self._damaged(path)
            return None
        digest, ident = line.decode("ascii").split(" ")
        return digest, ident

    def load_module(self, wasmtime_engine: Any, path: Path | None, sig: tuple[str, str] | None = None) -> Any:
        """A compiled core module (`wasmtime.Module`) from a verified entry, or None."""
        import wasmtime

        return self.load_compiled(path, lambda file: wasmtime.Module.deserialize_file(wasmtime_engine, file), sig)

    def load_compiled(self, path: Path | None, deserialize_file: Callable[[str], Any],
                      sig: tuple[str, str] | None = None) -> Any:
        """What `deserialize_file` makes of a verified entry (given a path to it), or None. `sig` is
        its (digest, identity) if a signed index already vouched for them, else its signature file
        is read. Compiled code is mapped, not read: a large entry is hashed only when its file
        changed since it was signed."""
        if path is None or self.key() is None:
            return None
        if sig is None:
            sig = self.signature(path)
            if sig is None:
                return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if _ident_text(st) != sig[1]:
                # written, copied or restored since it was signed: check the bytes themselves once
                h = _blake2b()
                with os.fdopen(os.dup(fd), "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                if h.hexdigest() != sig[0]:
                    self._damaged(path)
                    return None
                self._sign(path, sig[0], st)
                self.resigned = True  # an index that recorded the old identity is worth rewriting
            return _deserialized(deserialize_file, _fd_path(fd, path))
        except OSError:
            return None
        finally:
            os.close(fd)

    # -- content digests ----------------------------------------------------------------------

    def digest(self, wasm: bytes | WasmFile) -> str:
        """sha256 of the content. For a file, remembered under its identity (device, inode, size,
        mtime, ctime): any write changes ctime, which no one can set back, so an unchanged identity
        means unchanged bytes once the file has settled."""
        if not isinstance(wasm, WasmFile):
            return _sha256(wasm).hexdigest()
        if self.directory is None:
            return _sha256(wasm.read()).hexdigest()
        memo = self.directory / "digests" / f"{_ident_text(wasm.stat)}.txt"
        known = self.load_signed(memo)
        if known is not None and len(known) == 64:
            return known.decode("ascii")
        digest = _sha256(wasm.read()).hexdigest()
        try:
            after = os.stat(wasm.path)
        except OSError:
            return digest
        if _identity(after) == _identity(wasm.stat) and time.time_ns() - after.st_ctime_ns > _SETTLED_NS:
            self.store_signed(memo, digest.encode())
        return digest


def _sig_path(path: Path) -> Path:
    return path.with_name(path.name + ".sig")


_PROC_FDS = os.path.isdir("/proc/self/fd")


def _fd_path(fd: int, path: Path) -> str:
    """A name for the open file itself, so what was verified is what wasmtime maps (Linux's /proc)."""
    return f"/proc/self/fd/{fd}" if _PROC_FDS else str(path)


def _deserialized(deserialize_file: Callable[[str], Any], path: str) -> Any:
    import wasmtime

    try:
        return deserialize_file(path)
    except wasmtime.WasmtimeError:
        return None  # made by another wasmtime, or for another CPU: compile again


# -- compiling without blocking Ctrl-C ----------------------------------------------------------


def interruptible(fn: Callable[..., Any], *args: Any) -> Any:
    """Runs `fn(*args)` (a long call into wasmtime, which releases the GIL) on a worker thread while
    this thread waits, so Ctrl-C raises KeyboardInterrupt here at once instead of when it returns.
    An abandoned worker is a daemon: it dies with the process."""
    if threading.current_thread() is not threading.main_thread():
        return fn(*args)  # only the main thread receives signals: nothing to gain
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append((True, fn(*args)))
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            outcome.append((False, e))

    worker = threading.Thread(target=work, name="wasitls-compile", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.25)  # a bounded wait wakes for signals on every platform
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


# -- the index: a parsed component, as plain values ----------------------------------------------
# Each node is a list whose first item says what it is: a list, a tuple, a list of tuples of
# leaves, a core module (its offset only: the bytes are in the module's own entry), a nested
# component, canonical options, or one of the parser's definition classes, numbered by the index's
# own table of their names (negated when every field is a leaf). Leaves are str, int, None and
# tuples of those. Nothing else can be made from an index. The shortcuts for leaves keep a second
# start's decoding of a componentize-py guest's ~6,000 nodes near what unpickling cost.

_LIST, _TUPLE, _LEAF_TUPLES, _CORE_MODULE, _COMPONENT, _CANON_OPTIONS, _FIRST_DEF = range(7)
_DEF_CLASSES: dict[str, type] = {cls.__name__: cls for cls in vars(B).values()
                                 if isinstance(cls, type) and issubclass(cls, B._Def) and cls is not B._Def}
_DEF_NAMES = sorted(_DEF_CLASSES)
_DEF_CODES = {_DEF_CLASSES[name]: _FIRST_DEF + i for i, name in enumerate(_DEF_NAMES)}


def encode_component(comp: B.Component) -> Any:
    """The component's definitions as plain values, without the core modules' bytes."""
    return [_COMPONENT, comp.offset, comp.depth, *(_encode(d) for d in comp.definitions)]


def _encode(v: Any) -> Any:
    if isinstance(v, B.CoreModule):
        return [_CORE_MODULE, v.offset]
    if isinstance(v, B.Component):
        return encode_component(v)
    if isinstance(v, B._Def):
        fields = [_encode(x) for x in v]
        leaves = not any(type(x) is list for x in fields)
        return [-_DEF_CODES[type(v)] if leaves else _DEF_CODES[type(v)], *fields]
    if isinstance(v, B.CanonOptions):
        return [_CANON_OPTIONS, v.string_encoding, v.memory, v.realloc, v.post_return]
    if isinstance(v, tuple):
        if type(v) is tuple and all(_is_leaf(x) for x in v):
            return v  # a tuple of leaves is itself a leaf: stored, and read back, as it is
        return [_TUPLE, *(_encode(x) for x in v)]
    if isinstance(v, list):
        if v and all(type(x) is tuple and all(_is_leaf(y) for y in x) for x in v):
            return [_LEAF_TUPLES, *v]
        return [_LIST, *(_encode(x) for x in v)]
    if v is None or isinstance(v, (str, int)):
        return v
    raise TypeError(f"cannot index a {type(v).__name__}")


def _is_leaf(v: Any) -> bool:
    return v is None or type(v) in (str, int)


def decode_component(v: Any, names: list[str] = _DEF_NAMES) -> B.Component:
    """The component `encode_component` made, its definition classes numbered by `names`."""
    classes = [_DEF_CLASSES[name] for name in names]  # a KeyError for any name that is not a definition class
    arity = [len(cls._fields) for cls in classes]
    new = tuple.__new__

    # leaves are taken as they are, without a call: an index holds tens of thousands of them
    def decode(v: list) -> Any:
        code = v[0]
        if code < 0:
            i = -code - _FIRST_DEF
            if i < 0 or len(v) - 1 != arity[i]:
                raise ValueError(f"{names[i]} with {len(v) - 1} fields in the index")
            return new(classes[i], v[1:])
        if code >= _FIRST_DEF:
            i = code - _FIRST_DEF
            if len(v) - 1 != arity[i]:
                raise ValueError(f"{names[i]} with {len(v) - 1} fields in the index")
            return new(classes[i], [x if type(x) is not list else decode(x) for x in v[1:]])
        if code == _TUPLE:
            return tuple([x if type(x) is not list else decode(x) for x in v[1:]])
        if code == _LIST:
            return [x if type(x) is not list else decode(x) for x in v[1:]]
        if code == _LEAF_TUPLES:
            return v[1:]
        if code == _CANON_OPTIONS:
            opts = B.CanonOptions()
            opts.string_encoding, opts.memory, opts.realloc, opts.post_return = v[1:]
            return opts
        if code == _CORE_MODULE:
            return B.CoreModule(b"", v[1])
        if code == _COMPONENT:
            comp = B.Component(v[1], v[2])
            comp.definitions = [decode(x) for x in v[3:]]
            return comp
        raise ValueError(f"unknown node {code!r} in the index")

    if type(v) is not list or v[0] != _COMPONENT:
        raise ValueError("not a component")
    return decode(v)


def index_path(cache: CompileCache, wasm: bytes | WasmFile, version: str) -> Path | None:
    path = cache.path_for(wasm, "index", version)
    return None if path is None else path.with_suffix(".idx")


class IndexedModule:
    """A core module as the index lists it: its offset, its entry and signature, its imports."""

    __slots__ = ("offset", "name", "digest", "ident", "imports")

    def __init__(self, offset: int, name: str, digest: str, ident: str, imports: list[tuple[str, str]]):
        self.offset = offset
        self.name = name
        self.digest = digest  # the entry's signature, vouched for by the index's own
        self.ident = ident
        self.imports = imports


def write_index(cache: CompileCache, path: Path | None, comp: B.Component,
                modules: list[tuple[int, Path, list[tuple[str, str]]]]) -> None:
    """Stores what a second load needs: the definitions and, per core module, its entry's name and
    signature (so a second load reads no signature files) and its imports."""
    if path is None:
        return
    listed = []
    for offset, entry, imports in modules:
        sig = cache.signature(entry)
        if sig is None:
            return  # an entry could not be stored: no index either
        listed.append([offset, entry.name, sig[0], sig[1], [list(i) for i in imports]])
    doc = {"format": INDEX_FORMAT, "classes": _DEF_NAMES, "component": encode_component(comp), "modules": listed}
    cache.store_signed(path, marshal.dumps(doc))


def read_index(cache: CompileCache, path: Path | None) -> tuple[B.Component, list[IndexedModule]] | None:
    data = cache.load_signed(path)
    if data is None:
        return None
    import gc

    collecting = gc.isenabled()
    gc.disable()  # tens of thousands of new objects, none of them garbage: a collection would only cost
    try:
        doc = marshal.loads(data)  # only ever what `write_index` signed: see the module's docstring
        if type(doc) is not dict or doc.get("format") != INDEX_FORMAT:
            return None
        comp = decode_component(doc["component"], doc["classes"])
        modules = [IndexedModule(int(offset), str(name), str(digest), str(ident), [(str(m), str(n)) for m, n in imports])
                   for offset, name, digest, ident, imports in doc["modules"]]
    except (ValueError, EOFError, KeyError, TypeError, IndexError, AttributeError):
        return None  # signed by us but unreadable (another version): rebuilt
    finally:
        if collecting:
            gc.enable()
    return comp, modules
