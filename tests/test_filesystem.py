"""wasi:filesystem/types and preopens, driven from Python against real temporary directories.

Expected values are what `wasmtime run` (49) answers for the same calls, including its quirks
(trailing slashes, `set-times` on a preopen, which errno becomes which error-code). Every path test
runs twice: with openat2(RESOLVE_BENEATH), and with the manual component-by-component walk used
where openat2 is missing.
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from wasitls.component.values import Err, Trap, Variant
from wasitls import libc, sandbox
from wasitls.policy import Policy, Preopen
from wasitls.wasi.ctx import WasiCtx
from wasitls.wasi.filesystem import types as fs
from wasitls.wasi.filesystem.preopens import Preopens
from wasitls.wasi.filesystem.siphash import siphash13
from wasitls.wasi.filesystem.types import Descriptor, DirectoryEntryStream, Types
from wasitls.wasi.io.error import IoError
from wasitls.wasi.io.streams import InputStream, OutputStream

FOLLOW = {"symlink-follow"}
NOFOLLOW: set[str] = set()
SECRET = b"secret"


# -- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture(params=["openat2", "manual"])
def resolver(request, monkeypatch):
    if request.param == "manual":
        monkeypatch.setattr(sandbox, "_openat2_ok", False)
    elif not sandbox._openat2_ok:
        pytest.skip("openat2 is not available here")
    return request.param


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ (the preopen) beside outside/ (what no path may reach)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "root"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty_dir").mkdir()
    (root / "file.txt").write_bytes(b"hello world")
    (root / "sub" / "inner.txt").write_bytes(b"inner")
    links = {
        "link_in": "file.txt", "link_sub": "sub", "link_out": "../outside/secret.txt",
        "link_abs": "/etc/passwd", "link_dir_abs": "/tmp", "link_dotdot": "..",
        "chain1": "chain2", "chain2": "sub/inner.txt", "chain_out1": "chain_out2", "chain_out2": "../outside",
        "loop1": "loop2", "loop2": "loop1", "dangling": "nonexistent", "selfdir": ".",
        "sub/up": "../file.txt", "sub/upout": "../../outside/secret.txt", "sub/dd": "..",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    return root


@pytest.fixture
def root(tree: Path, resolver: str):
    d = Descriptor.open_preopen(tree)
    yield d
    d.drop()


def outside_untouched(tree: Path) -> None:
    outside = tree.parent / "outside"
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == SECRET
    assert sorted(os.listdir(tree.parent)) == ["outside", "root"]


def code(fn, *args) -> str:
    try:
        result = fn(*args)
    except Err as e:
        return e.value
    pytest.fail(f"expected an error, got {result!r}")


def ts(seconds: int, nanoseconds: int = 0) -> Variant:
    return Variant("timestamp", {"seconds": seconds, "nanoseconds": nanoseconds})


def open_file(d: Descriptor, path: str, oflags=(), flags=("read",), pflags=NOFOLLOW) -> Descriptor:
    return d.open_at(set(pflags), path, set(oflags), set(flags))


def entries(d: Descriptor) -> list[tuple[str, str]]:
    stream = d.read_directory()
    out = []
    while (entry := stream.read_directory_entry()) is not None:
        out.append((entry["name"], entry["type"]))
    return sorted(out)


# -- preopens ----------------------------------------------------------------------------------------

def test_get_directories_hands_out_the_policy_preopens(tree: Path, tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    ctx = WasiCtx(policy=Policy(preopens=[Preopen(tree, "/"), Preopen(other, "data")]))
    preopens = Preopens(ctx)
    dirs = preopens.get_directories()
    assert [name for _, name in dirs] == ["/", "data"]
    d, _ = dirs[0]
    assert isinstance(d, Descriptor)
    assert d.get_type() == "directory"
    assert d.get_flags() == {"read", "mutate-directory"}
    assert d.stat()["type"] == "directory"
    # every call opens nothing new: dropping one descriptor leaves the others on the same directory
    again, _ = preopens.get_directories()[0]
    assert d.is_same_object(again)
    d.drop()
    assert again.stat_at(NOFOLLOW, "file.txt")["size"] == 11
    assert Preopens().get_directories() == []
    assert Preopens.resources == {}  # it only `use`s descriptor
    assert Types.resources == {"descriptor": Descriptor, "directory-entry-stream": DirectoryEntryStream}


def test_dir_option_guest_names_as_wasmtime_reads_them(tmp_path: Path):
    (tmp_path / "data").mkdir()
    specs = ["data", "./data", "data::/", "data::/x/", "data::.", "data::"]
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        policy = Policy.build(dirs=specs)
    finally:
        os.chdir(old)
    # HOST alone names the guest's directory as written; after `::` the guest name is taken as given
    assert [p.guest_path for p in policy.preopens] == ["data", "./data", "/", "/x/", ".", ""]
    assert {p.host_path for p in policy.preopens} == {(tmp_path / "data").resolve()}


def test_preopen_is_opened_once(tree: Path, tmp_path: Path):
    preopens = Preopens(WasiCtx(policy=Policy(preopens=[Preopen(tree, "/")])))
    tree.rename(tmp_path / "renamed")
    d, _ = preopens.get_directories()[0]
    assert d.stat_at(NOFOLLOW, "file.txt")["size"] == 11


# -- stat, types, flags ----------------------------------------------------------------------------

def test_stat_at_reports_type_size_links_and_times(root: Descriptor, tree: Path):
    st = root.stat_at(NOFOLLOW, "file.txt")
    host = os.stat(tree / "file.txt")
    assert st["type"] == "regular-file"
    assert st["size"] == 11
    assert st["link-count"] == 1
    assert st["data-modification-timestamp"] == {"seconds": host.st_mtime_ns // 10**9,
                                                 "nanoseconds": host.st_mtime_ns % 10**9}
    assert st["data-access-timestamp"] == {"seconds": host.st_atime_ns // 10**9,
                                           "nanoseconds": host.st_atime_ns % 10**9}
    # wasmtime reports the birth time here, where the file system keeps one
    change = st["status-change-timestamp"]
    assert change is None or set(change) == {"seconds", "nanoseconds"}
    assert root.stat_at(NOFOLLOW, "sub")["type"] == "directory"
    assert root.stat_at(NOFOLLOW, "sub")["link-count"] == 3
    link = root.stat_at(NOFOLLOW, "link_in")
    assert (link["type"], link["size"]) == ("symbolic-link", len("file.txt"))
    assert root.stat_at(FOLLOW, "link_in")["type"] == "regular-file"
    assert root.stat_at(FOLLOW, "chain1")["size"] == 5
    assert root.stat_at(NOFOLLOW, "dangling")["type"] == "symbolic-link"
    assert code(root.stat_at, FOLLOW, "dangling") == "no-entry"
    assert root.stat_at(NOFOLLOW, "sub/../file.txt")["size"] == 11
    assert root.stat_at(NOFOLLOW, "link_sub/inner.txt")["size"] == 5
    assert root.stat_at(NOFOLLOW, "link_sub/../file.txt")["size"] == 11  # `..` of where the link led
    assert root.stat_at(NOFOLLOW, "selfdir/selfdir/file.txt")["size"] == 11
    assert root.stat_at(NOFOLLOW, ".")["type"] == "directory"


def test_stat_at_errors(root: Descriptor):
    assert code(root.stat_at, NOFOLLOW, "nonexistent") == "no-entry"
    assert code(root.stat_at, NOFOLLOW, "") == "no-entry"
    assert code(root.stat_at, NOFOLLOW, "file.txt/x") == "not-directory"
    assert code(root.stat_at, FOLLOW, "loop1") == "loop"
    assert code(root.stat_at, NOFOLLOW, "loop1/x") == "loop"
    assert code(root.stat_at, NOFOLLOW, "a\0b") == "invalid"
    assert code(root.stat_at, NOFOLLOW, "x" * 300) == "name-too-long"


def test_trailing_slashes_as_wasmtime_reads_them(root: Descriptor):
    # a single name, not followed, is looked up without its slash (cap-std's shortcut)...
    assert root.stat_at(NOFOLLOW, "file.txt/")["type"] == "regular-file"
    assert root.stat_at(NOFOLLOW, "link_sub/")["type"] == "symbolic-link"
    # ...anything else goes to the kernel, for which a slash demands a directory
    assert code(root.stat_at, FOLLOW, "file.txt/") == "not-directory"
    assert root.stat_at(FOLLOW, "link_sub/")["type"] == "directory"
    assert root.stat_at(NOFOLLOW, "sub/")["type"] == "directory"
    assert code(open_file, root, "file.txt/") == "not-directory"
    assert open_file(root, "link_sub/").get_type() == "directory"
    assert code(open_file, root, "new/", ["create"], ["write"]) == "is-directory"
    root.create_directory_at("made/")  # mkdir ignores a trailing slash
    assert code(root.remove_directory_at, "made/") == "invalid"  # rmdir reads it as "made/."
    root.remove_directory_at("made")
    assert code(root.rename_at, "file.txt", root, "x/") == "not-directory"
    assert code(root.unlink_file_at, "sub/") == "is-directory"


def test_get_type_and_get_flags(root: Descriptor):
    f = open_file(root, "file.txt", flags=["read"])
    assert f.get_type() == "regular-file"
    assert f.get_flags() == {"read"}
    assert open_file(root, "file.txt", flags=["write"]).get_flags() == {"write"}
    assert open_file(root, "file.txt", flags=["read", "write"]).get_flags() == {"read", "write"}
    assert open_file(root, "file.txt", flags=[]).get_flags() == {"read"}  # opened for reading anyway
    assert open_file(root, "file.txt", ["truncate"], ["read"]).get_flags() == {"read", "write"}
    assert open_file(root, "new.txt", ["create"], []).get_flags() == {"read", "write"}
    sub = open_file(root, "sub", ["directory"], ["read", "mutate-directory"])
    assert sub.get_type() == "directory"
    assert sub.get_flags() == {"read"}  # as wasmtime: mutate-directory is never recorded for open-at
    assert root.get_flags() == {"read", "mutate-directory"}


# -- open-at -----------------------------------------------------------------------------------------

def test_open_at_flags(root: Descriptor, tree: Path):
    assert code(open_file, root, "new.txt") == "no-entry"
    f = open_file(root, "new.txt", ["create"], ["read", "write"])
    assert f.write(b"abc", 0) == 3
    assert (tree / "new.txt").read_bytes() == b"abc"
    assert code(open_file, root, "new.txt", ["create", "exclusive"], ["write"]) == "exist"
    assert open_file(root, "new.txt", ["exclusive"]).read(10, 0) == (b"abc", False)  # ignored without create
    open_file(root, "new.txt", ["truncate"], ["write"])
    assert (tree / "new.txt").read_bytes() == b""
    assert code(open_file, root, "file.txt", ["directory"]) == "not-directory"
    for oflags in (["directory", "create"], ["directory", "exclusive"], ["directory", "truncate"]):
        assert code(open_file, root, "sub", oflags) == "invalid"
    for sync in ("file-integrity-sync", "data-integrity-sync", "requested-write-sync"):
        assert code(open_file, root, "file.txt", [], ["read", sync]) == "unsupported"
    assert code(open_file, root, "sub", [], ["read", "write"]) == "is-directory"
    assert code(open_file, root, "sub", ["create"], ["read"]) == "is-directory"
    assert code(open_file, root, "", []) == "no-entry"
    assert open_file(root, "sub", [], []).get_type() == "directory"
    assert open_file(root, ".", ["directory"]).is_same_object(root)


def test_open_at_symlinks(root: Descriptor, tree: Path):
    assert code(open_file, root, "link_in") == "loop"  # the final link is not followed
    assert open_file(root, "link_in", pflags=FOLLOW).read(100, 0) == (b"hello world", False)
    assert code(open_file, root, "link_sub", ["directory"]) == "loop"
    assert open_file(root, "link_sub", ["directory"], pflags=FOLLOW).get_type() == "directory"
    assert code(lambda: open_file(root, "loop1", pflags=FOLLOW)) == "loop"
    assert code(open_file, root, "dangling", ["create"], ["write"]) == "loop"
    open_file(root, "dangling", ["create"], ["write"], pflags=FOLLOW)  # creates what it points at
    assert (tree / "nonexistent").exists()


def test_a_directory_opened_beneath_keeps_the_sandbox(root: Descriptor):
    sub = open_file(root, "sub", ["directory"])
    assert sub.stat_at(NOFOLLOW, "inner.txt")["size"] == 5
    assert sub.stat_at(NOFOLLOW, "deeper/..")["type"] == "directory"
    # inside the preopen, but above this descriptor
    assert code(sub.stat_at, NOFOLLOW, "..") == "not-permitted"
    assert code(sub.stat_at, NOFOLLOW, "../file.txt") == "not-permitted"
    assert code(sub.stat_at, FOLLOW, "up") == "not-permitted"
    assert code(sub.stat_at, NOFOLLOW, "dd/file.txt") == "not-permitted"
    assert code(open_file, sub, "..", ["directory"]) == "not-permitted"
    assert entries(sub) == [("dd", "symbolic-link"), ("deeper", "directory"), ("inner.txt", "regular-file"),
                            ("up", "symbolic-link"), ("upout", "symbolic-link")]


# -- reading and writing -------------------------------------------------------------------------------

def test_read_and_write(root: Descriptor, tree: Path):
    f = open_file(root, "file.txt", flags=["read", "write"])
    assert f.read(100, 0) == (b"hello world", False)
    assert f.read(5, 6) == (b"world", False)
    assert f.read(100, 11) == (b"", True)
    assert f.read(100, 50) == (b"", True)
    assert f.read(0, 0) == (b"", True)  # as wasmtime: an empty read says end-of-file
    assert f.write(b"HELLO", 0) == 5
    assert f.write(b"", 3) == 0
    assert f.write(b"!", 20) == 1  # past the end: a hole of zeros
    assert (tree / "file.txt").read_bytes() == b"HELLO world" + bytes(9) + b"!"
    # offsets past what the OS's signed offset holds
    assert code(f.read, 10, 2**64 - 1) == "invalid"
    assert code(f.read, 10, 2**63) == "invalid"
    assert code(f.write, b"x", 2**63 - 1) == "invalid"


def test_read_is_capped_at_64k(root: Descriptor, tree: Path):
    (tree / "big").write_bytes(bytes(300_000))
    f = open_file(root, "big")
    data, end = f.read(1_000_000, 0)
    assert (len(data), end) == (65536, False)
    assert len(f.read(2**64 - 1, 0)[0]) == 65536


def test_the_os_enforces_the_open_mode(root: Descriptor):
    ro = open_file(root, "file.txt", flags=["read"])
    assert code(ro.write, b"x", 0) == "bad-descriptor"
    assert code(ro.set_size, 0) == "invalid"
    wo = open_file(root, "file.txt", flags=["write"])
    assert code(wo.read, 10, 0) == "bad-descriptor"


def test_set_size_advise_sync(root: Descriptor, tree: Path):
    f = open_file(root, "file.txt", flags=["read", "write"])
    f.set_size(100)
    assert f.stat()["size"] == 100
    f.set_size(5)
    assert (tree / "file.txt").read_bytes() == b"hello"
    assert code(f.set_size, 2**63 - 1) == "file-too-large"
    assert code(f.set_size, 2**64 - 1) == "invalid"
    for advice in ("normal", "sequential", "random", "will-need", "dont-need", "no-reuse"):
        f.advise(0, 100, advice)
    f.advise(2**64 - 1, 0, "normal")
    assert code(f.advise, 0, 2**64 - 1, "normal") == "invalid"
    f.sync()
    f.sync_data()
    root.sync()
    root.sync_data()
    open_file(root, "sub").sync()


def test_file_functions_on_a_directory_and_back(root: Descriptor):
    f = open_file(root, "file.txt")
    sub = open_file(root, "sub")
    for call in (lambda: sub.read(1, 0), lambda: sub.write(b"x", 0), lambda: sub.set_size(0),
                 lambda: sub.advise(0, 0, "normal"), lambda: sub.write_via_stream(0), lambda: sub.append_via_stream(),
                 lambda: root.read(1, 0)):
        assert code(call) == "bad-descriptor"
    assert code(sub.read_via_stream, 0) == "is-directory"
    for call in (f.read_directory, lambda: f.create_directory_at("x"), lambda: f.stat_at(NOFOLLOW, "x"),
                 lambda: open_file(f, "x"), lambda: f.readlink_at("x"), lambda: f.remove_directory_at("x"),
                 lambda: f.unlink_file_at("x"), lambda: f.symlink_at("a", "b"),
                 lambda: f.metadata_hash_at(NOFOLLOW, "x"),
                 lambda: f.set_times_at(NOFOLLOW, "x", Variant("now"), Variant("now")),
                 lambda: f.link_at(NOFOLLOW, "a", root, "b"), lambda: root.link_at(NOFOLLOW, "file.txt", f, "b"),
                 lambda: f.rename_at("a", root, "b"), lambda: root.rename_at("file.txt", f, "b")):
        assert code(call) == "not-directory"


# -- directories -------------------------------------------------------------------------------------

def test_read_directory(root: Descriptor, tree: Path):
    names = dict(entries(root))
    assert "." not in names and ".." not in names
    assert names["file.txt"] == "regular-file"
    assert names["sub"] == "directory"
    assert names["link_out"] == "symbolic-link"
    assert names["dangling"] == "symbolic-link"
    assert entries(open_file(root, "empty_dir")) == []
    # a second stream starts from the beginning again
    assert entries(root) == sorted(names.items())


def test_read_directory_reports_names_that_are_not_utf8(root: Descriptor, tree: Path):
    os.close(os.open(os.path.join(os.fsencode(tree / "empty_dir"), b"bad\xff"), os.O_CREAT | os.O_WRONLY))
    (tree / "empty_dir" / "good").write_bytes(b"")
    stream = open_file(root, "empty_dir").read_directory()
    seen = []
    while True:
        try:
            entry = stream.read_directory_entry()
        except Err as e:
            seen.append(e.value)
            continue
        if entry is None:
            break
        seen.append(entry["name"])
    assert sorted(seen) == ["good", "illegal-byte-sequence"]


def test_create_and_remove(root: Descriptor, tree: Path):
    root.create_directory_at("newdir")
    assert (tree / "newdir").is_dir()
    assert code(root.create_directory_at, "newdir") == "exist"
    assert code(root.create_directory_at, "a/b") == "no-entry"
    assert code(root.create_directory_at, "file.txt/x") == "not-directory"
    assert code(root.create_directory_at, ".") == "exist"
    assert code(root.create_directory_at, "") == "no-entry"
    assert code(root.create_directory_at, "link_out") == "exist"
    root.create_directory_at("link_sub/via_link")  # links inside the tree are followed to the parent
    assert (tree / "sub" / "via_link").is_dir()
    assert code(root.remove_directory_at, "sub") == "not-empty"
    assert code(root.remove_directory_at, "file.txt") == "not-directory"
    assert code(root.remove_directory_at, "link_sub") == "not-directory"
    assert code(root.remove_directory_at, ".") == "invalid"
    assert code(root.remove_directory_at, "missing") == "no-entry"
    root.remove_directory_at("newdir")
    assert not (tree / "newdir").exists()
    assert code(root.unlink_file_at, "sub") == "is-directory"
    assert code(root.unlink_file_at, ".") == "is-directory"
    assert code(root.unlink_file_at, "file.txt/") == "not-directory"
    assert code(root.unlink_file_at, "missing") == "no-entry"
    root.unlink_file_at("link_sub")  # the link, not the directory
    assert (tree / "sub").is_dir() and not (tree / "link_sub").exists()
    root.unlink_file_at("link_out")  # a link pointing outside is itself inside
    root.unlink_file_at("file.txt")
    assert not (tree / "file.txt").exists()
    outside_untouched(tree)


def test_rename(root: Descriptor, tree: Path):
    sub = open_file(root, "sub", ["directory"])
    root.rename_at("file.txt", sub, "moved.txt")
    assert (tree / "sub" / "moved.txt").read_bytes() == b"hello world"
    sub.rename_at("moved.txt", root, "back.txt")
    assert (tree / "back.txt").exists()
    assert code(root.rename_at, "missing", root, "x") == "no-entry"
    assert code(root.rename_at, "sub", root, "back.txt") == "not-directory"
    assert code(root.rename_at, "back.txt", root, "sub") == "is-directory"
    assert code(root.rename_at, "empty_dir", root, "sub") == "not-empty"
    assert code(root.rename_at, "back.txt/", root, "x") == "not-directory"
    assert code(root.rename_at, "sub", root, "sub/deeper/x") == "invalid"
    assert code(root.rename_at, ".", root, "x") == "busy"
    root.rename_at("empty_dir/", root, "renamed_dir/")
    assert (tree / "renamed_dir").is_dir()
    root.rename_at("link_out", root, "link_out2")  # moves the link, not what it names
    assert os.readlink(tree / "link_out2") == "../outside/secret.txt"
    outside_untouched(tree)


def test_link_symlink_readlink(root: Descriptor, tree: Path):
    root.link_at(NOFOLLOW, "file.txt", root, "hard")
    assert root.stat_at(NOFOLLOW, "file.txt")["link-count"] == 2
    assert root.is_same_object(root) and open_file(root, "hard").is_same_object(open_file(root, "file.txt"))
    assert code(root.link_at, FOLLOW, "file.txt", root, "hard2") == "invalid"
    assert code(root.link_at, NOFOLLOW, "file.txt", root, "hard") == "exist"
    assert code(root.link_at, NOFOLLOW, "sub", root, "hard_dir") == "not-permitted"  # EPERM from the kernel
    assert code(root.link_at, NOFOLLOW, "missing", root, "x") == "no-entry"
    root.link_at(NOFOLLOW, "link_out", root, "hard_link_out")  # links the link itself
    assert os.readlink(tree / "hard_link_out") == "../outside/secret.txt"

    root.symlink_at("file.txt", "s1")
    assert root.readlink_at("s1") == "file.txt"
    root.symlink_at("../outside", "s2")  # may be made; can never be followed out
    assert root.readlink_at("s2") == "../outside"
    assert code(root.stat_at, FOLLOW, "s2") == "not-permitted"
    assert code(root.symlink_at, "/etc/passwd", "s3") == "not-permitted"
    assert code(root.symlink_at, "x", "s1") == "exist"
    assert code(root.symlink_at, "", "s4") == "no-entry"
    assert code(root.symlink_at, "x", "missing/s5") == "no-entry"
    assert root.readlink_at("link_in") == "file.txt"
    assert root.readlink_at("sub/up") == "../file.txt"
    assert code(root.readlink_at, "link_abs") == "not-permitted"  # tells nothing of the host outside
    assert code(root.readlink_at, "file.txt") == "invalid"
    assert code(root.readlink_at, "missing") == "no-entry"
    assert code(root.readlink_at, "link_in/") == "not-directory"
    outside_untouched(tree)


# -- times -------------------------------------------------------------------------------------------

def test_set_times(root: Descriptor, tree: Path):
    f = open_file(root, "file.txt", flags=["write"])
    f.set_times(ts(1000, 5), ts(2000, 7))
    st = f.stat()
    assert st["data-access-timestamp"] == {"seconds": 1000, "nanoseconds": 5}
    assert st["data-modification-timestamp"] == {"seconds": 2000, "nanoseconds": 7}
    f.set_times(Variant("no-change"), ts(3000, 2_500_000_000))  # nanoseconds carry into seconds
    st = f.stat()
    assert st["data-access-timestamp"]["seconds"] == 1000
    assert st["data-modification-timestamp"] == {"seconds": 3002, "nanoseconds": 500_000_000}
    f.set_times(Variant("now"), Variant("no-change"))
    assert f.stat()["data-access-timestamp"]["seconds"] > 1_000_000_000
    assert code(f.set_times, Variant("no-change"), ts(2**63)) == "overflow"
    open_file(root, "sub").set_times(ts(5, 6), ts(7, 8))
    assert root.stat_at(NOFOLLOW, "sub")["data-modification-timestamp"] == {"seconds": 7, "nanoseconds": 8}
    # a preopen is a name-only descriptor (O_PATH), as in wasmtime
    assert code(root.set_times, ts(1), ts(2)) == "bad-descriptor"


def test_set_times_at(root: Descriptor, tree: Path):
    root.set_times_at(NOFOLLOW, "sub", ts(15, 6), ts(17, 8))
    assert os.stat(tree / "sub").st_mtime_ns == 17 * 10**9 + 8
    root.set_times_at(NOFOLLOW, "link_sub", ts(25), ts(27))
    assert os.lstat(tree / "link_sub").st_mtime_ns == 27 * 10**9
    assert os.stat(tree / "sub").st_mtime_ns == 17 * 10**9 + 8
    root.set_times_at(FOLLOW, "link_sub", Variant("no-change"), ts(37))
    assert os.stat(tree / "sub").st_mtime_ns == 37 * 10**9
    root.set_times_at(NOFOLLOW, "link_out", ts(45), ts(46))  # the link inside, not its target
    assert os.lstat(tree / "link_out").st_mtime_ns == 46 * 10**9
    assert code(root.set_times_at, FOLLOW, "link_out", Variant("now"), Variant("now")) == "not-permitted"
    assert code(root.set_times_at, NOFOLLOW, "missing", Variant("now"), Variant("now")) == "no-entry"
    assert code(root.set_times_at, FOLLOW, "dangling", Variant("now"), Variant("now")) == "no-entry"
    assert code(root.set_times_at, FOLLOW, "file.txt/", Variant("now"), Variant("now")) == "not-directory"
    assert code(root.set_times_at, NOFOLLOW, "x", ts(2**64 - 1), Variant("now")) == "overflow"
    root.set_times_at(NOFOLLOW, ".", ts(55), ts(56))
    assert os.stat(tree).st_mtime_ns == 56 * 10**9
    assert (tree.parent / "outside" / "secret.txt").stat().st_mtime_ns > 10**18
    outside_untouched(tree)


# -- identity ----------------------------------------------------------------------------------------

def test_is_same_object_and_metadata_hash(root: Descriptor, tree: Path):
    a = open_file(root, "file.txt")
    b = open_file(root, "link_in", pflags=FOLLOW)
    sub = open_file(root, "sub")
    assert a.is_same_object(b)
    assert not a.is_same_object(sub)
    assert a.metadata_hash() == b.metadata_hash() == root.metadata_hash_at(NOFOLLOW, "file.txt")
    assert root.metadata_hash_at(FOLLOW, "link_sub") == sub.metadata_hash()
    assert root.metadata_hash_at(NOFOLLOW, "link_sub") != sub.metadata_hash()
    assert root.metadata_hash() == root.metadata_hash_at(NOFOLLOW, ".")
    hashes = {tuple(sorted(root.metadata_hash_at(NOFOLLOW, n).items())) for n in os.listdir(tree)}
    assert len(hashes) == len(os.listdir(tree))
    h = a.metadata_hash()
    assert set(h) == {"lower", "upper"} and all(0 <= v < 2**64 for v in h.values())
    assert code(root.metadata_hash_at, NOFOLLOW, "../outside") == "not-permitted"
    assert code(root.metadata_hash_at, NOFOLLOW, "missing") == "no-entry"


def test_metadata_hash_is_wasmtimes():
    # measured: wasmtime 49 hashed a directory with st_dev 65024, st_ino 2150596 to these values
    m = libc.Stat(0, 1, 0, 65024, 2150596, None, None, None)
    assert fs._metadata_hash_value(m) == {"lower": 2598491984879113215, "upper": 7207610199860805351}
    st = os.stat(".")
    m.dev, m.ino = st.st_dev, st.st_ino
    fd = os.open(".", os.O_RDONLY)
    try:
        assert fs._metadata_hash_value(libc.fstatx(fd)) == fs._metadata_hash_value(m)
    finally:
        os.close(fd)
    assert siphash13(struct.pack("<QQ", 65024, 2150596)) == 2598491984879113215


# -- streams -----------------------------------------------------------------------------------------

def test_read_via_stream(root: Descriptor, tree: Path):
    f = open_file(root, "file.txt")
    stream = f.read_via_stream(3)
    assert isinstance(stream, InputStream)
    assert stream.subscribe().ready()
    assert stream.read(4) == b"lo w"
    assert stream.blocking_read(100) == b"orld"
    assert code(stream.read, 1).case == "closed"
    assert f.read_via_stream(100).read(0) == b""
    assert code(f.read_via_stream(100).blocking_read, 1).case == "closed"
    (tree / "big").write_bytes(bytes(300_000))
    assert len(open_file(root, "big").read_via_stream(0).blocking_read(1 << 20)) == 65536


def test_write_and_append_via_stream(root: Descriptor, tree: Path):
    f = open_file(root, "file.txt", flags=["read", "write"])
    out = f.write_via_stream(6)
    assert isinstance(out, OutputStream)
    assert out.check_write() == 65536
    out.blocking_write_and_flush(b"WORLD!!")
    assert (tree / "file.txt").read_bytes() == b"hello WORLD!!"
    out.write(b"?")  # the offset advances
    assert (tree / "file.txt").read_bytes() == b"hello WORLD!!?"
    app = f.append_via_stream()
    app.blocking_write_and_flush(b"++")
    f.write(b"x", 100)
    app.blocking_write_and_flush(b"--")  # always at the end, wherever that is now
    data = (tree / "file.txt").read_bytes()
    assert data.startswith(b"hello WORLD!!?++") and data.endswith(b"x--") and len(data) == 103


def test_stream_errors_carry_a_filesystem_error_code(root: Descriptor):
    types = Types(WasiCtx())
    ro = open_file(root, "file.txt", flags=["read"])
    out = ro.write_via_stream(0)  # made, as in wasmtime; the OS refuses the write
    out.write(b"abc")
    err = code(out.check_write)
    assert err.case == "last-operation-failed"
    assert isinstance(err.value, IoError)
    assert types.filesystem_error_code(err.value) == "bad-descriptor"
    assert "os error 9" in err.value.to_debug_string()
    assert code(out.check_write).case == "closed"
    err = code(ro.append_via_stream().blocking_write_and_flush, b"abc")
    assert types.filesystem_error_code(err.value) == "bad-descriptor"
    wo = open_file(root, "file.txt", flags=["write"])
    err = code(wo.read_via_stream(0).blocking_read, 10)
    assert err.case == "last-operation-failed"
    assert types.filesystem_error_code(err.value) == "bad-descriptor"
    err = code(ro.read_via_stream(2**64 - 1).blocking_read, 10)
    assert types.filesystem_error_code(err.value) == "invalid"
    assert types.filesystem_error_code(IoError("not from a file")) is None


def test_streams_outlive_their_descriptor_and_drop_closes_the_fd(root: Descriptor, tree: Path):
    f = open_file(root, "file.txt", flags=["read", "write"])
    fd = f.fd
    inp = f.read_via_stream(0)
    out = f.append_via_stream()
    f.drop()
    f.drop()  # a second drop is harmless
    os.fstat(fd)  # still open: the streams hold it
    assert inp.blocking_read(5) == b"hello"
    out.blocking_write_and_flush(b"!")
    inp.drop()
    out.drop()
    with pytest.raises(OSError) as e:
        os.fstat(fd)
    assert e.value.errno == errno.EBADF
    assert (tree / "file.txt").read_bytes() == b"hello world!"

    d = open_file(root, "sub")
    fd = d.fd
    d.drop()
    with pytest.raises(OSError):
        os.fstat(fd)


# -- rights ------------------------------------------------------------------------------------------

def test_read_only_preopen(tree: Path, resolver: str):
    d = Descriptor.open_preopen(tree, dir_perms={"read"}, file_perms={"read"})
    try:
        assert d.stat_at(NOFOLLOW, "file.txt")["size"] == 11
        assert entries(d)
        f = open_file(d, "file.txt")
        assert f.read(5, 0) == (b"hello", False)
        for oflags, flags in ((["create"], ["read"]), (["truncate"], ["read"]), ([], ["write"])):
            assert code(open_file, d, "file.txt", oflags, flags) == "not-permitted"
        for call in (lambda: d.create_directory_at("x"), lambda: d.remove_directory_at("sub"),
                     lambda: d.unlink_file_at("file.txt"), lambda: d.symlink_at("a", "b"),
                     lambda: d.link_at(NOFOLLOW, "file.txt", d, "b"), lambda: d.rename_at("file.txt", d, "b"),
                     lambda: d.set_times_at(NOFOLLOW, "file.txt", Variant("now"), Variant("now")),
                     lambda: d.set_times(Variant("now"), Variant("now")),
                     lambda: f.write(b"x", 0), lambda: f.set_size(0),
                     lambda: f.set_times(Variant("now"), Variant("now"))):
            assert code(call) == "not-permitted"
        assert code(f.write_via_stream, 0) == "bad-descriptor"
        assert code(f.append_via_stream) == "bad-descriptor"
        sub = open_file(d, "sub")
        assert code(sub.create_directory_at, "x") == "not-permitted"  # the rights are inherited
        assert (tree / "file.txt").read_bytes() == b"hello world"
        assert not (tree / "x").exists()
    finally:
        d.drop()


def test_rights_without_read(tree: Path, resolver: str):
    d = Descriptor.open_preopen(tree, dir_perms={"mutate"}, file_perms=set())
    try:
        for call in (lambda: d.stat_at(NOFOLLOW, "file.txt"), lambda: open_file(d, "file.txt"),
                     d.read_directory, lambda: d.readlink_at("link_in")):
            assert code(call) == "not-permitted"
        assert d.metadata_hash_at(NOFOLLOW, "file.txt")  # no rights asked for, as in wasmtime
        d.create_directory_at("made")
        assert (tree / "made").is_dir()
    finally:
        d.drop()


def test_mutate_directory_is_not_checked_per_descriptor(root: Descriptor, tree: Path):
    # wasmtime records mutate-directory on no descriptor it opens, and checks only the host's rights
    sub = open_file(root, "sub", ["directory"], ["read"])
    sub.create_directory_at("made")
    open_file(sub, "f", ["create"], ["write"])
    assert (tree / "sub" / "made").is_dir() and (tree / "sub" / "f").exists()


# -- the sandbox ---------------------------------------------------------------------------------------

ESCAPES = [
    "..", "../outside", "../outside/secret.txt", "/etc/passwd", "/tmp", "//tmp", "/",
    "sub/../../outside/secret.txt", "sub/../..", "link_dotdot/outside/secret.txt", "chain_out1/secret.txt",
    "link_sub/../../outside", "sub/dd/../outside", "link_abs/x", "link_dir_abs/x", "link_out/x",
    "sub/upout/x", "selfdir/../outside",
]
FOLLOWED_ESCAPES = ["link_out", "link_abs", "link_dir_abs", "link_dotdot", "chain_out1", "sub/upout"]


def path_calls(root: Descriptor):
    """Every path-taking function, as (name, call(path) -> anything, follows the last link?)."""
    now = Variant("now")
    yield "stat-at", lambda p: root.stat_at(NOFOLLOW, p), False
    yield "stat-at/follow", lambda p: root.stat_at(FOLLOW, p), True
    yield "open-at", lambda p: open_file(root, p), False
    yield "open-at/follow", lambda p: open_file(root, p, pflags=FOLLOW), True
    yield "open-at/create", lambda p: open_file(root, p, ["create"], ["write"], pflags=FOLLOW), True
    yield "open-at/truncate", lambda p: open_file(root, p, ["truncate"], ["write"], pflags=FOLLOW), True
    yield "create-directory-at", lambda p: root.create_directory_at(p), False
    yield "remove-directory-at", root.remove_directory_at, False
    yield "unlink-file-at", root.unlink_file_at, False
    yield "readlink-at", root.readlink_at, False
    yield "symlink-at", lambda p: root.symlink_at("file.txt", p), False
    yield "link-at/old", lambda p: root.link_at(NOFOLLOW, p, root, "new_hard"), False
    yield "link-at/new", lambda p: root.link_at(NOFOLLOW, "file.txt", root, p), False
    yield "rename-at/old", lambda p: root.rename_at(p, root, "new_name"), False
    yield "rename-at/new", lambda p: root.rename_at("file.txt", root, p), False
    yield "set-times-at", lambda p: root.set_times_at(NOFOLLOW, p, now, now), False
    yield "set-times-at/follow", lambda p: root.set_times_at(FOLLOW, p, now, now), True
    yield "metadata-hash-at", lambda p: root.metadata_hash_at(NOFOLLOW, p), False
    yield "metadata-hash-at/follow", lambda p: root.metadata_hash_at(FOLLOW, p), True


def test_no_path_leads_out_of_the_preopen(root: Descriptor, tree: Path):
    before = {p: os.stat(tree.parent / "outside" / p).st_mtime_ns for p in ("", "secret.txt")}
    failures = []
    for name, call, follows in path_calls(root):
        paths = ESCAPES + (FOLLOWED_ESCAPES if follows else [])
        for path in paths:
            try:
                result = call(path)
            except Err as e:
                if e.value != "not-permitted":
                    failures.append((name, path, e.value))
            else:
                failures.append((name, path, result))
    assert failures == []
    outside_untouched(tree)
    assert {p: os.stat(tree.parent / "outside" / p).st_mtime_ns for p in ("", "secret.txt")} == before
    assert (tree / "file.txt").read_bytes() == b"hello world"


def test_resolution_leaks_no_descriptors(root: Descriptor, tree: Path):
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    paths = ESCAPES + FOLLOWED_ESCAPES + ["sub/up", "link_sub/deeper/../inner.txt", "loop1/x", "file.txt/x", "missing/x"]

    def exercise():
        for _, call, _ in path_calls(root):
            for path in paths:
                try:
                    result = call(path)
                except Err:
                    continue
                if isinstance(result, Descriptor):
                    result.drop()

    exercise()  # anything cached is opened now
    before = len(os.listdir("/proc/self/fd"))
    exercise()
    assert len(os.listdir("/proc/self/fd")) == before


def test_an_absolute_symlink_target_cannot_be_made_or_read(root: Descriptor, tree: Path):
    assert code(root.symlink_at, "/etc/passwd", "abs") == "not-permitted"
    assert code(root.readlink_at, "link_dir_abs") == "not-permitted"
    assert not (tree / "abs").exists()


def test_links_inside_the_tree_resolve(root: Descriptor):
    assert root.stat_at(FOLLOW, "sub/up")["size"] == 11  # sub/../file.txt
    assert open_file(root, "chain1", pflags=FOLLOW).read(10, 0) == (b"inner", False)
    assert root.stat_at(NOFOLLOW, "sub/dd/file.txt")["size"] == 11
    assert root.stat_at(NOFOLLOW, "link_sub/deeper/../../file.txt")["size"] == 11
    assert code(root.stat_at, NOFOLLOW, "link_sub/deeper/../../..") == "not-permitted"


def test_a_symlink_loop_is_loop(root: Descriptor):
    assert code(root.stat_at, FOLLOW, "loop1") == "loop"
    assert code(open_file, root, "loop1/x") == "loop"
    assert code(root.create_directory_at, "loop1/x") == "loop"


def test_a_directory_moved_out_while_walking_cannot_lead_out(root: Descriptor, tree: Path, resolver: str):
    # a descriptor on a directory that is then moved outside the preopen stays confined to it
    sub = open_file(root, "sub", ["directory"])
    os.rename(tree / "sub", tree.parent / "outside" / "moved")
    try:
        assert code(sub.stat_at, NOFOLLOW, "..") == "not-permitted"
        assert code(sub.stat_at, NOFOLLOW, "../secret.txt") == "not-permitted"
        assert sub.stat_at(NOFOLLOW, "inner.txt")["size"] == 5
    finally:
        os.rename(tree.parent / "outside" / "moved", tree / "sub")


# -- error codes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("errno_name, expected", [
    ("ENOENT", "no-entry"), ("EEXIST", "exist"), ("ENOTDIR", "not-directory"), ("EISDIR", "is-directory"),
    ("EACCES", "access"), ("EPERM", "not-permitted"), ("ENOTEMPTY", "not-empty"), ("EBADF", "bad-descriptor"),
    ("ELOOP", "loop"), ("EINVAL", "invalid"), ("EPIPE", "pipe"), ("ENOMEM", "insufficient-memory"), ("EIO", "io"),
    ("EBUSY", "busy"), ("EFBIG", "file-too-large"), ("ENOSPC", "insufficient-space"), ("ESPIPE", "invalid-seek"),
    ("EMLINK", "too-many-links"), ("ENAMETOOLONG", "name-too-long"), ("EOVERFLOW", "overflow"),
    ("EILSEQ", "illegal-byte-sequence"), ("ENOTSUP", "unsupported"), ("EOPNOTSUPP", "unsupported"),
    ("EALREADY", "already"), ("EINPROGRESS", "in-progress"), ("EINTR", "interrupted"),
    # what wasmtime leaves as `io`
    ("EXDEV", "io"), ("EROFS", "io"), ("EAGAIN", "io"), ("EDQUOT", "io"), ("ETXTBSY", "io"), ("ENXIO", "io"),
])
def test_errno_to_error_code(errno_name: str, expected: str):
    assert fs.error_code(OSError(getattr(errno, errno_name), "x")) == expected


def test_is_same_object_has_no_error_case(root: Descriptor):
    f = open_file(root, "file.txt")
    f.handle.release()  # the fd is gone underneath
    with pytest.raises(Trap):
        f.is_same_object(root)


def test_resolution_primitives():
    assert sandbox.split_parent(b"a/b/c") == (b"a/b", b"c")
    assert sandbox.split_parent(b"a") == (b"", b"a")
    assert sandbox.split_parent(b"a/") == (b"a/", b".")
    assert sandbox.split_parent(b"a/.") == (b"a/.", b".")
    assert sandbox.split_parent(b".") == (b"", b".")
    assert sandbox.split_parent(b"..") == (b"..", b".")
    assert sandbox.split_parent(b"../a") == (b"..", b"a")
    assert sandbox.split_parent(b"/a") == (b"/", b"a")
    assert sandbox.split_parent(b"a//b") == (b"a", b"b")
    with pytest.raises(FileNotFoundError):
        sandbox.split_parent(b"")
    assert sandbox._rust_components(b"./a//b/./") == [b".", b"a", b"b"]
    assert sandbox._rust_components(b"a/.") == [b"a"]
    assert sandbox.strip_dir_suffix(b"a//") == b"a" and sandbox.strip_dir_suffix(b"/") == b"/"
    assert fs._i64(2**64 - 1) == -1 and fs._i64(5) == 5
