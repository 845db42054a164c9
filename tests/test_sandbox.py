"""wasitls.sandbox on its own: resolution beneath a directory fd, against real files in a tmp dir.

Every test runs with both resolvers (openat2(RESOLVE_BENEATH) and the walk used where openat2 is
missing), except the races, which are made deterministic by swapping the tree at a chosen step of
the walk. A path that leads out raises PathEscape (EPERM); nothing outside is ever read or changed.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from wasitls import sandbox
from wasitls.sandbox import PathEscape

SECRET = b"secret"
O_PATH = getattr(os, "O_PATH", 0)
RD = os.O_RDONLY | os.O_CLOEXEC
NOFOLLOW = os.O_NOFOLLOW


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    if request.param == "walk":
        monkeypatch.setattr(sandbox, "_openat2_ok", False)
    elif not sandbox._openat2_ok:
        pytest.skip("openat2 is not available here")
    return request.param


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ (what `start` names) beside outside/ (what no path may reach)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "file.txt").write_bytes(SECRET)  # a decoy with the name of one inside
    root = tmp_path / "root"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "file.txt").write_bytes(b"hello world")
    (root / "sub" / "inner.txt").write_bytes(b"inner")
    links = {
        "link_in": "file.txt", "link_sub": "sub", "link_out": "../outside/secret.txt",
        "link_abs": "/etc/passwd", "link_abs_dir": str(outside), "link_dotdot": "..",
        "chain1": "chain2", "chain2": "sub/inner.txt", "chain_out1": "chain_out2", "chain_out2": "../outside",
        "loop1": "loop2", "loop2": "loop1", "self_loop": "self_loop", "dangling": "nonexistent",
        "selfdir": ".", "sub/up": "../file.txt", "sub/upout": "../../outside/secret.txt", "sub/dd": "..",
        "sub/abs_rel": "../link_abs",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    return root


@pytest.fixture
def start(tree: Path, resolver: str):
    fd = sandbox.open_directory(tree)
    yield fd
    os.close(fd)


def outside_untouched(tree: Path) -> None:
    outside = tree.parent / "outside"
    assert sorted(os.listdir(outside)) == ["file.txt", "secret.txt"]
    assert (outside / "secret.txt").read_bytes() == SECRET
    assert sorted(os.listdir(tree.parent)) == ["outside", "root"]


def read_beneath(start: int, path: bytes, flags: int = 0) -> bytes:
    fd = sandbox.open_beneath(start, path, RD | flags)
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


def fails(errnum: int, fn, *args) -> None:
    with pytest.raises(OSError) as info:
        fn(*args)
    assert info.value.errno == errnum, info.value


# -- escapes -----------------------------------------------------------------------------------------

ESCAPES = [
    # .. above the start
    b"..", b"../", b"../outside/secret.txt", b"sub/../..", b"sub/../../outside/secret.txt",
    b"sub/deeper/../../../outside/file.txt", b"./../root/file.txt", b"sub/./../../root/file.txt",
    # absolute paths
    b"/", b"/etc/passwd", b"//etc/passwd", b"/../etc/passwd",
    # symbolic links: absolute, relative out, through a directory link, chains
    b"link_abs", b"link_abs_dir", b"link_abs_dir/secret.txt", b"link_out", b"sub/upout", b"link_dotdot",
    b"link_dotdot/root/file.txt", b"link_dotdot/outside/secret.txt", b"chain_out1", b"chain_out1/secret.txt",
    b"sub/abs_rel", b"link_sub/dd/../outside", b"sub/dd/link_out", b"selfdir/../outside",
]


@pytest.mark.parametrize("path", ESCAPES, ids=lambda p: p.decode())
def test_escapes_are_refused(start, tree, path):
    with pytest.raises(PathEscape) as info:
        read_beneath(start, path, O_PATH)
    assert info.value.errno == errno.EPERM
    outside_untouched(tree)


@pytest.mark.parametrize("path", [b"link_abs", b"link_out", b"chain_out1", b"sub/upout", b"link_dotdot"])
def test_escaping_links_refused_by_every_operation_that_follows(start, tree, path):
    times = ((0, 0), (0, 0))
    for call in (lambda: sandbox.stat_beneath(start, path, True),
                 lambda: sandbox.set_times_beneath(start, path, times, True),
                 lambda: sandbox.mkdir_beneath(start, path + b"/new"),
                 lambda: sandbox.unlink_beneath(start, path + b"/secret.txt"),
                 lambda: sandbox.symlink_beneath(b"x", start, path + b"/new"),
                 lambda: sandbox.rename_beneath(start, b"file.txt", start, path + b"/file.txt"),
                 lambda: sandbox.link_beneath(start, b"file.txt", start, path + b"/file.txt")):
        with pytest.raises(OSError) as info:
            call()
        # a link to a file, followed as a directory, may fail as not-a-directory instead
        assert info.value.errno in (errno.EPERM, errno.ENOTDIR), info.value
    assert (tree / "file.txt").read_bytes() == b"hello world"
    outside_untouched(tree)


def test_escapes_by_the_last_component_operations(start, tree):
    for call in (lambda: sandbox.mkdir_beneath(start, b"../made"),
                 lambda: sandbox.mkdir_beneath(start, b"/tmp/made"),
                 lambda: sandbox.rmdir_beneath(start, b"../outside"),
                 lambda: sandbox.unlink_beneath(start, b"../outside/secret.txt"),
                 lambda: sandbox.unlink_beneath(start, b"link_dotdot/outside/secret.txt"),
                 lambda: sandbox.rename_beneath(start, b"../outside/secret.txt", start, b"got.txt"),
                 lambda: sandbox.rename_beneath(start, b"file.txt", start, b"../outside/file.txt"),
                 lambda: sandbox.link_beneath(start, b"../outside/secret.txt", start, b"got.txt"),
                 lambda: sandbox.symlink_beneath(b"/etc/passwd", start, b"new_abs"),
                 lambda: sandbox.symlink_beneath(b"x", start, b"../outside/new"),
                 lambda: sandbox.readlink_beneath(start, b"link_abs"),
                 lambda: sandbox.readlink_beneath(start, b"../outside"),
                 lambda: sandbox.stat_beneath(start, b"../outside", False),
                 lambda: sandbox.stat_beneath(start, b"/", False)):
        with pytest.raises(PathEscape):
            call()
    assert not (tree / "new_abs").exists() and not (tree / "got.txt").exists()
    outside_untouched(tree)


# -- what stays inside is allowed ------------------------------------------------------------------------

@pytest.mark.parametrize("path, content", [
    (b"file.txt", b"hello world"), (b"./file.txt", b"hello world"), (b"sub/../file.txt", b"hello world"),
    (b"sub/deeper/../../file.txt", b"hello world"), (b"link_in", b"hello world"),
    (b"link_sub/inner.txt", b"inner"), (b"chain1", b"inner"), (b"sub/up", b"hello world"),
    (b"sub/dd/file.txt", b"hello world"), (b"selfdir/selfdir/file.txt", b"hello world"),
    (b"link_sub/dd/link_sub/up", b"hello world"), (b"sub//inner.txt", b"inner"),
], ids=lambda p: p.decode() if isinstance(p, bytes) else None)
def test_in_tree_paths_and_links_are_followed(start, tree, path, content):
    assert read_beneath(start, path) == content


def test_the_start_itself(start, tree):
    for path in (b".", b"./", b"sub/..", b"selfdir", b"sub/dd", b"link_sub/.."):
        fd = sandbox.open_beneath(start, path, O_PATH | os.O_DIRECTORY)
        try:
            assert os.path.samestat(os.fstat(fd), os.stat(tree))
        finally:
            os.close(fd)


def test_in_tree_operations(start, tree):
    sandbox.mkdir_beneath(start, b"sub/made/")
    assert (tree / "sub" / "made").is_dir()
    sandbox.symlink_beneath(b"../../file.txt", start, b"sub/made/link")
    assert sandbox.readlink_beneath(start, b"sub/made/link") == b"../../file.txt"
    assert read_beneath(start, b"sub/made/link") == b"hello world"
    sandbox.rename_beneath(start, b"sub/made", start, b"sub/moved")
    sandbox.link_beneath(start, b"file.txt", start, b"sub/moved/hard")
    assert os.stat(tree / "sub" / "moved" / "hard").st_ino == os.stat(tree / "file.txt").st_ino
    assert read_beneath(start, b"sub/moved/link") == b"hello world"
    sandbox.unlink_beneath(start, b"sub/moved/link")
    sandbox.unlink_beneath(start, b"sub/moved/hard")
    sandbox.rmdir_beneath(start, b"sub/moved")
    assert sorted(os.listdir(tree / "sub")) == ["abs_rel", "dd", "deeper", "inner.txt", "up", "upout"]
    # a relative link pointing out may be read and removed (it is inside), just never followed
    assert sandbox.readlink_beneath(start, b"link_out") == b"../outside/secret.txt"
    sandbox.unlink_beneath(start, b"link_out")
    outside_untouched(tree)


# -- O_NOFOLLOW and not following ----------------------------------------------------------------------

def test_nofollow_on_the_last_component(start, tree):
    # O_NOFOLLOW applies to the last component only: a link there is refused, not followed
    for path in (b"link_in", b"link_out", b"link_abs", b"chain1", b"sub/up"):
        fails(errno.ELOOP, read_beneath, start, path, NOFOLLOW)
    # links before the last component are still followed, beneath the start
    assert read_beneath(start, b"link_sub/inner.txt", NOFOLLOW) == b"inner"
    with pytest.raises(PathEscape):
        read_beneath(start, b"chain_out1/secret.txt", NOFOLLOW)


def test_o_path_nofollow_opens_the_link_itself(start, tree):
    for path in (b"link_abs", b"link_out", b"dangling", b"loop1"):
        fd = sandbox.open_beneath(start, path, O_PATH | NOFOLLOW | os.O_CLOEXEC)
        try:
            assert stat.S_ISLNK(os.fstat(fd).st_mode)
        finally:
            os.close(fd)


def test_stat_follows_or_not(start, tree):
    assert stat.S_ISLNK(sandbox.stat_beneath(start, b"link_abs", False).mode)
    assert stat.S_ISLNK(sandbox.stat_beneath(start, b"sub/upout", False).mode)
    assert stat.S_ISREG(sandbox.stat_beneath(start, b"link_in", True).mode)
    assert sandbox.stat_beneath(start, b"chain1", True).size == len(b"inner")
    with pytest.raises(PathEscape):
        sandbox.stat_beneath(start, b"sub/upout", True)


def test_set_times_on_a_link_not_its_target(start, tree):
    before = os.stat(tree / "file.txt").st_mtime_ns
    sandbox.set_times_beneath(start, b"link_in", ((5, 0), (7, 0)), False)
    assert os.lstat(tree / "link_in").st_mtime_ns == 7 * 10**9
    assert os.stat(tree / "file.txt").st_mtime_ns == before
    sandbox.set_times_beneath(start, b"link_in", ((5, 0), (9, 0)), True)
    assert os.stat(tree / "file.txt").st_mtime_ns == 9 * 10**9


# -- loops, dangling links, long paths, NUL bytes --------------------------------------------------------

def test_loops_and_dangling_links(start, tree):
    for path in (b"loop1", b"self_loop", b"loop1/x"):
        fails(errno.ELOOP, read_beneath, start, path)
    fails(errno.ENOENT, read_beneath, start, b"dangling")
    fails(errno.ENOENT, read_beneath, start, b"")
    fails(errno.ENOTDIR, read_beneath, start, b"file.txt/x")


def test_link_chains_up_to_the_limit(start, tree):
    n = sandbox.MAX_SYMLINKS
    for i in range(n + 5):
        os.symlink(f"c{i + 1}" if i + 1 < n + 5 else "file.txt", tree / f"c{i}")
    assert read_beneath(start, f"c{5}".encode()) == b"hello world"  # n links: the most followed
    fails(errno.ELOOP, read_beneath, start, b"c0")  # n + 5 links


def test_long_paths(start, tree):
    fails(errno.ENAMETOOLONG, read_beneath, start, b"x" * 256)
    fails(errno.ENAMETOOLONG, read_beneath, start, b"sub/" + b"x" * 300)
    with pytest.raises(OSError) as info:
        read_beneath(start, b"sub/" * 1100 + b"file.txt")  # past PATH_MAX
    assert info.value.errno in (errno.ENAMETOOLONG, errno.ENOENT)
    # deep but inside: 60 levels, reached through a path, then climbed back out of to the start
    deep = b"/".join([b"d"] * 60)
    for i in range(1, 61):
        sandbox.mkdir_beneath(start, b"/".join([b"d"] * i))
    sandbox.symlink_beneath(b"/".join([b".."] * 60) + b"/file.txt", start, deep + b"/top")
    assert read_beneath(start, deep + b"/top") == b"hello world"
    sandbox.symlink_beneath(b"/".join([b".."] * 61) + b"/outside/secret.txt", start, deep + b"/out")
    with pytest.raises(PathEscape):
        read_beneath(start, deep + b"/out")
    outside_untouched(tree)


def test_nul_bytes_are_invalid_not_a_crash(start, tree):
    path = b"file.txt\0../../outside/secret.txt"
    for call in (lambda: sandbox.open_beneath(start, path, RD),
                 lambda: sandbox.stat_beneath(start, path, True),
                 lambda: sandbox.stat_beneath(start, path, False),
                 lambda: sandbox.set_times_beneath(start, path, ((0, 0), (0, 0)), True),
                 lambda: sandbox.mkdir_beneath(start, path),
                 lambda: sandbox.unlink_beneath(start, path),
                 lambda: sandbox.rmdir_beneath(start, path),
                 lambda: sandbox.readlink_beneath(start, path),
                 lambda: sandbox.symlink_beneath(b"a\0b", start, b"new"),
                 lambda: sandbox.symlink_beneath(b"file.txt", start, path),
                 lambda: sandbox.rename_beneath(start, path, start, b"x"),
                 lambda: sandbox.link_beneath(start, b"file.txt", start, path)):
        fails(errno.EINVAL, call)
    outside_untouched(tree)


# -- races: the tree changing under a walk -------------------------------------------------------------

@pytest.fixture
def walk_start(tree: Path, monkeypatch):
    monkeypatch.setattr(sandbox, "_openat2_ok", False)
    fd = sandbox.open_directory(tree)
    yield fd
    os.close(fd)


def swap_when_read(monkeypatch, name: bytes, swap) -> None:
    """Runs `swap` just after the walk asked whether `name` is a link, before it opens it."""
    readlink = os.readlink

    def racing_readlink(path, *args, **kwargs):
        try:
            return readlink(path, *args, **kwargs)
        finally:
            if path == name:
                swap()

    monkeypatch.setattr(sandbox.os, "readlink", racing_readlink)


def test_race_directory_swapped_for_a_link_out(walk_start, tree, monkeypatch):
    # `sub` is a directory when checked, a link to outside/ when opened: not followed
    def swap():
        os.rename(tree / "sub", tree / "sub_was")
        os.symlink("../outside", tree / "sub")

    swap_when_read(monkeypatch, b"sub", swap)
    with pytest.raises(OSError) as info:
        read_beneath(walk_start, b"sub/secret.txt")
    assert info.value.errno in (errno.ELOOP, errno.ENOTDIR)
    outside_untouched(tree)


def test_race_file_swapped_for_a_link_out(walk_start, tree, monkeypatch):
    def swap():
        os.rename(tree / "file.txt", tree / "file_was")
        os.symlink("../outside/secret.txt", tree / "file.txt")

    swap_when_read(monkeypatch, b"file.txt", swap)
    fails(errno.ELOOP, read_beneath, walk_start, b"file.txt")
    outside_untouched(tree)


def test_race_directory_moved_out_mid_walk(walk_start, tree, monkeypatch):
    # once inside sub/, sub/ is moved outside the tree; `..` still leads back to the start, whose
    # file.txt is read, not outside/file.txt
    swap_when_read(monkeypatch, b"deeper", lambda: os.rename(tree / "sub", tree.parent / "outside" / "sub"))
    assert read_beneath(walk_start, b"sub/deeper/../../file.txt") == b"hello world"
    assert (tree.parent / "outside" / "sub").is_dir()
