"""The compile cache and the command line around it: what a hostile or damaged cache, a hostile
component and a Ctrl-C during the first compile must not do.

  - a component nested hundreds deep is refused with one line (exit 2), with and without the cache;
  - a damaged cache entry is dropped and rebuilt with one warning line, and the run still works;
  - the cache never runs code from what it reads (no pickle), and is owner-only;
  - Ctrl-C during a first-run compile ends the process at once (status 130, one line).
"""

from __future__ import annotations

import marshal
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import wasmtime

from engines import ENGINES
from wasitls.component import binary
from wasitls.component import compile_cache as cc
from wasitls.component.compile_cache import CompileCache
from wasitls.component.errors import ComponentError
from wasitls.component.fast import FastBackend

EXIT_WITH = """
(component
  (import "wasi:cli/exit@0.2.9" (instance $exit (export "exit-with-code" (func (param "status-code" u8)))))
  (core func $exit_lowered (canon lower (func $exit "exit-with-code")))
  (core module $m
    (import "host" "exit" (func $exit (param i32)))
    (func (export "run") (result i32) (call $exit (i32.const 7)) unreachable))
  (core instance $host (export "exit" (func $exit_lowered)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.9" (instance $r)))
"""
GUEST_STATUS = 7  # the status the guest above exits with: proof that it ran


def run(*args: str, cache: Path | None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("WASITLS_NO_CACHE", None)
    if cache is not None:
        env["WASITLS_CACHE_DIR"] = str(cache)
    return subprocess.run([sys.executable, "-m", "wasitls", "run", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# -- F1: deep nesting -------------------------------------------------------------------------------


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


HEADER = binary.MAGIC + binary.COMPONENT_VERSION


def nested_components(depth: int) -> bytes:
    """A component holding a component holding ... `depth` levels of (empty) nested components."""
    wasm = HEADER
    for _ in range(depth):
        wasm = HEADER + b"\x04" + _leb(len(wasm)) + wasm
    return wasm


def nested_instance_types(depth: int) -> bytes:
    """A component whose one type is an instance type declaring an instance type ... `depth` deep."""
    t = b"\x42\x00"
    for _ in range(depth - 1):
        t = b"\x42\x01\x01" + t  # an instance type with one declaration: a type, this one
    body = b"\x01" + t
    return HEADER + b"\x07" + _leb(len(body)) + body


@pytest.mark.parametrize("depth", [250, 1200])
@pytest.mark.parametrize("cache_flag", ["cache", "--no-cache"])
@pytest.mark.parametrize("engine", ENGINES)
def test_deeply_nested_component_is_one_line(tmp_path, depth, cache_flag, engine):
    wasm = tmp_path / "deep.wasm"
    wasm.write_bytes(nested_components(depth))
    flags = ["--no-cache"] if cache_flag == "--no-cache" else []
    proc = run("--engine", engine, *flags, str(wasm), cache=tmp_path / "cache")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert len(lines(proc.stderr)) == 1, proc.stderr
    assert len(proc.stderr) < 500, proc.stderr  # one readable line, not a list of enclosing components
    if engine == "fast":
        assert f"nested more than {binary.MAX_NESTING} deep" in proc.stderr


def test_deeply_nested_types_are_refused():
    with pytest.raises(ComponentError, match=f"nested more than {binary.MAX_NESTING} deep"):
        binary.parse_component(nested_instance_types(1000))
    binary.parse_component(nested_instance_types(binary.MAX_NESTING))


def test_nesting_at_the_bound_goes_through_the_index(tmp_path):
    """The deepest component the parser accepts is written to the index and read back from it."""
    wasm = nested_components(binary.MAX_NESTING)
    cache = CompileCache(tmp_path)
    first = FastBackend().load(wasm, cache=cache)
    index = list(tmp_path.glob("index-*.idx"))
    assert len(index) == 1
    second = FastBackend().load(wasm, cache=cache)
    depth, comp = 0, second.comp
    while comp.definitions:
        comp = comp.definitions[0]
        depth += 1
    assert depth == binary.MAX_NESTING
    assert first.exported_interfaces() == second.exported_interfaces() == []
    with pytest.raises(ComponentError):
        FastBackend().load(nested_components(binary.MAX_NESTING + 1), cache=cache)


# -- F7: the cache holds nothing it did not sign ------------------------------------------------------


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("*.bin"))


def _flip_middle(path: Path) -> None:
    """A same-size corruption: the bytes in the middle of the file, inverted."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, min(len(data), mid + 64)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("engine", ENGINES)
def test_damaged_entry_is_rebuilt_with_one_warning(tmp_path, engine):
    cache = tmp_path / "cache"
    wasm = tmp_path / "guest.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(EXIT_WITH))
    first = run("--engine", engine, str(wasm), cache=cache)
    assert first.returncode == GUEST_STATUS and first.stderr == ""
    entries = _entries(cache)
    assert entries, list(cache.iterdir())
    for entry in entries:
        size = entry.stat().st_size
        _flip_middle(entry)
        assert entry.stat().st_size == size
    damaged = run("--engine", engine, str(wasm), cache=cache)
    assert damaged.returncode == GUEST_STATUS, damaged.stderr
    assert len(lines(damaged.stderr)) == 1, damaged.stderr
    assert "warning" in damaged.stderr and "failed verification" in damaged.stderr
    again = run("--engine", engine, str(wasm), cache=cache)
    assert again.returncode == GUEST_STATUS and again.stderr == ""  # rebuilt, and trusted again


def test_forged_signature_is_refused(tmp_path):
    """Someone who can write the directory but not read the key cannot make an entry trusted."""
    cache_dir = tmp_path / "cache"
    wasm = wasmtime.wat2wasm(EXIT_WITH)
    FastBackend().load(wasm, cache=CompileCache(cache_dir))
    (entry,) = _entries(cache_dir)
    _flip_middle(entry)
    digest = cc._blake2b(entry.read_bytes()).hexdigest()
    line = f"{digest} {cc._ident_text(entry.stat())}"
    forged = cc._blake2b(f"{entry.name}\n{line}".encode(), key=os.urandom(32)).hexdigest()
    entry.with_name(entry.name + ".sig").write_text(f"{line}\n{forged}\n")
    warnings: list[str] = []
    cache = CompileCache(cache_dir, warn=warnings.append)
    CompileCache._warned.discard(cache_dir)
    assert cache.load_module(FastBackend().wasmtime_engine, entry) is None
    assert len(warnings) == 1 and entry.name in warnings[0]
    assert not entry.exists()  # dropped


def _evil_pickle(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps(Evil())


@pytest.mark.parametrize("engine", ENGINES)
def test_hostile_index_runs_no_code(tmp_path, engine):
    cache = tmp_path / "cache"
    wasm = tmp_path / "guest.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(EXIT_WITH))
    assert run("--engine", engine, str(wasm), cache=cache).returncode == GUEST_STATUS
    marker = tmp_path / "pwned"
    evil = _evil_pickle(marker)
    targets = list(cache.glob("index-*")) + list(cache.glob("interfaces-*")) + list(cache.glob("digests/*"))
    # the index's old name too, as an older wasitls read it
    targets += [p.with_suffix(".bin") for p in cache.glob("index-*.idx")]
    for target in targets:
        target.write_bytes(evil)
    proc = run("--engine", engine, str(wasm), cache=cache)
    assert proc.returncode == GUEST_STATUS, proc.stderr
    assert not marker.exists()
    assert len(lines(proc.stderr)) <= 1 and "Traceback" not in proc.stderr


def test_index_holds_plain_values_only(tmp_path):
    wasm = wasmtime.wat2wasm(EXIT_WITH)
    FastBackend().load(wasm, cache=CompileCache(tmp_path))
    (index,) = tmp_path.glob("index-*.idx")
    mac, data = index.read_bytes().split(b"\n", 1)
    doc = marshal.loads(data)
    assert doc["format"] == cc.INDEX_FORMAT


    def plain(v):
        if type(v) in (list, tuple):
            return all(plain(x) for x in v)
        if type(v) is dict:
            return all(type(k) is str and plain(x) for k, x in v.items())
        return v is None or type(v) in (str, int)

    assert plain(doc)
    assert cc.decode_component(doc["component"], doc["classes"]).definitions
    # even a signed index naming anything but the parser's definition classes is refused
    names = ["os.system", *doc["classes"][1:]]
    with pytest.raises(KeyError):
        cc.decode_component(doc["component"], names)
    for node in ([999, "true"], [-1, "true"], ["os.system", "true"]):
        with pytest.raises((ValueError, IndexError, TypeError)):
            cc.decode_component([*doc["component"], node], doc["classes"])


def test_concurrent_first_starts_share_one_cache(tmp_path):
    """Starts racing to make the key and the entries of a fresh cache all run, and warn of nothing."""
    cache = tmp_path / "cache"
    wasm = tmp_path / "guest.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(EXIT_WITH))
    env = dict(os.environ, WASITLS_CACHE_DIR=str(cache))
    env.pop("WASITLS_NO_CACHE", None)
    procs = [subprocess.Popen([sys.executable, "-m", "wasitls", "run", str(wasm)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == GUEST_STATUS and err == "", err
    again = run(str(wasm), cache=cache)
    assert again.returncode == GUEST_STATUS and again.stderr == ""


def test_cache_is_owner_only(tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o755)
    os.chmod(cache_dir, 0o755)
    FastBackend().load(wasmtime.wat2wasm(EXIT_WITH), cache=CompileCache(cache_dir))
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    files = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"key"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_cache_of_another_user_is_not_used(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory owned by another user")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    os.chown(cache_dir, 12345, 12345)
    warnings: list[str] = []
    CompileCache._warned.discard(cache_dir)
    cache = CompileCache(cache_dir, warn=warnings.append)
    FastBackend().load(wasmtime.wat2wasm(EXIT_WITH), cache=cache)
    assert cache.directory is None
    assert len(warnings) == 1 and "another user" in warnings[0]
    assert list(cache_dir.iterdir()) == []


# -- F12: Ctrl-C during the first compile ---------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_ctrl_c_during_first_compile_is_prompt(tmp_path, build_guest, engine):
    guest = build_guest("wasi_probe")  # an 18 MB componentize-py guest: seconds to compile
    env = dict(os.environ, WASITLS_CACHE_DIR=str(tmp_path / "empty-cache"))
    env.pop("WASITLS_NO_CACHE", None)
    proc = subprocess.Popen([sys.executable, "-m", "wasitls", "run", "--engine", engine, str(guest)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        seen = []
        while True:  # the progress line is printed as a large compile starts
            line = proc.stderr.readline()
            assert line, f"exited before compiling: {proc.wait()} {seen}"
            seen.append(line)
            if "compiling" in line:
                break
        time.sleep(0.2)  # well inside the compile (it takes seconds)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        status = proc.wait(timeout=60)
        waited = time.monotonic() - sent
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 130, rest
    assert lines(rest) == ["wasitls: interrupted"], rest
    assert waited < 3.0, f"Ctrl-C took {waited:.1f} s to end the process"
