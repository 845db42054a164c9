"""Host-call cost and the data path, fast engine against reference, measured in one run.

    python bench/host_call.py                 empty host call + 64 KiB reads from an in-memory stream
    python bench/host_call.py --stdin 1024    also: a WASI command reading 1024 MiB of stdin in 64 KiB
                                              blocking-read calls, on `wasitls run --engine fast|reference`
                                              and on the wasmtime CLI (if installed)

The guests are small components in the component text format, written out below.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from wasitls.component.compile_cache import CompileCache  # noqa: E402
from wasitls.component.fast import FastBackend  # noqa: E402
from wasitls.component.linker import HostInterface, HostLinker  # noqa: E402
from wasitls.component.values import Err, Variant  # noqa: E402

# An export that calls `wasi:clocks/monotonic-clock.now` n times in a loop.
CLOCK_LOOP = r"""
(component
  (import "wasi:clocks/monotonic-clock@0.2.9" (instance $clock (export "now" (func (result u64)))))
  (alias export $clock "now" (func $now))
  (core func $now-c (canon lower (func $now)))
  (core module $m
    (import "h" "now" (func $now (result i64)))
    (func (export "spin") (param $n i32) (result i64) (local $acc i64)
      (block $done (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $acc (i64.add (local.get $acc) (call $now)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
      (local.get $acc)))
  (core instance $i (instantiate $m (with "h" (instance (export "now" (func $now-c))))))
  (func (export "spin") (param "n" u32) (result u64) (canon lift (core func $i "spin")))
)
"""

# Two guests over one WASI-shaped byte source (borrow self, a result of list<u8> or a
# stream-error variant); they differ only in the core function they export.
SOURCE_GUEST = r"""
(component
  (type $src-t (instance
    (export "input-stream" (type $is (sub resource)))
    (type $se (variant (case "last-operation-failed" string) (case "closed")))
    (export "stream-error" (type $se2 (eq $se)))
    (type $r (result (list u8) (error $se2)))
    (export "[method]input-stream.blocking-read" (func (param "self" (borrow $is)) (param "len" u64) (result $r)))
    (export "open" (func (result (own $is))))
  ))
  (import "bench:io/source" (instance $src (type $src-t)))
  (alias export $src "input-stream" (type $input-stream))
  (alias export $src "[method]input-stream.blocking-read" (func $read))
  (alias export $src "open" (func $open))
  (core module $libc
    (memory (export "memory") 2)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024)))
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "realloc" (core func $realloc))
  (core func $read-c (canon lower (func $read) (memory $mem) (realloc $realloc)))
  (core func $open-c (canon lower (func $open)))
  (core func $drop-c (canon resource.drop $input-stream))
  (core module $m
    (import "h" "read" (func $read (param i32 i64 i32)))
    (import "h" "open" (func $open (result i32)))
    (import "h" "drop" (func $drop (param i32)))
    (import "libc" "memory" (memory 2))
{body}  (core instance $i (instantiate $m (with "libc" (instance $libc))
    (with "h" (instance (export "read" (func $read-c)) (export "open" (func $open-c)) (export "drop" (func $drop-c))))))
{lift})
"""

# A guest draining the source in 64 KiB blocking-read calls; `drain` returns the number of bytes read.
DRAIN = SOURCE_GUEST.replace("{body}", r"""    (func (export "drain") (result i64) (local $h i32) (local $total i64)
      (local.set $h (call $open))
      (block $done (loop $l
        (call $read (local.get $h) (i64.const 65536) (i32.const 16))
        (br_if $done (i32.load8_u (i32.const 16)))
        (local.set $total (i64.add (local.get $total) (i64.extend_i32_u (i32.load (i32.const 24)))))
        (br $l)))
      (call $drop (local.get $h))
      (local.get $total)))
""").replace("{lift}", r"""  (func (export "drain") (result u64) (canon lift (core func $i "drain")))
""")

# A WASI-shaped call in a loop: `[method]input-stream.blocking-read` of 0 bytes on a borrowed handle,
# its result<list<u8>, stream-error> returned through memory. What a real guest pays per stream call.
READ0_LOOP = SOURCE_GUEST.replace("{body}", r"""    (func (export "spin") (param $n i32) (result i64) (local $h i32) (local $acc i64)
      (local.set $h (call $open))
      (block $done (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (call $read (local.get $h) (i64.const 0) (i32.const 16))
        (local.set $acc (i64.add (local.get $acc) (i64.extend_i32_u (i32.load (i32.const 24)))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
      (call $drop (local.get $h))
      (local.get $acc)))
""").replace("{lift}", r"""  (func (export "spin") (param "n" u32) (result u64) (canon lift (core func $i "spin")))
""")

# The same loop as a WASI 0.2 command reading stdin, for `wasitls run` and `wasmtime run`.
STDIN_COMMAND = r"""
(component $C
  (import "wasi:io/error@0.2.9" (instance $ioerr (export "error" (type (sub resource)))))
  (alias export $ioerr "error" (type $error))
  (type $streams-t (instance
    (alias outer $C $error (type $e))
    (export "error" (type $e2 (eq $e)))
    (export "input-stream" (type $is (sub resource)))
    (type $se (variant (case "last-operation-failed" (own $e2)) (case "closed")))
    (export "stream-error" (type $se2 (eq $se)))
    (type $r (result (list u8) (error $se2)))
    (export "[method]input-stream.blocking-read" (func (param "self" (borrow $is)) (param "len" u64) (result $r)))
  ))
  (import "wasi:io/streams@0.2.9" (instance $streams (type $streams-t)))
  (alias export $streams "input-stream" (type $input-stream))
  (alias export $streams "[method]input-stream.blocking-read" (func $read))
  (type $stdin-t (instance
    (alias outer $C $input-stream (type $is))
    (export "input-stream" (type $is2 (eq $is)))
    (export "get-stdin" (func (result (own $is2))))
  ))
  (import "wasi:cli/stdin@0.2.9" (instance $stdin (type $stdin-t)))
  (alias export $stdin "get-stdin" (func $get-stdin))
  (core module $libc
    (memory (export "memory") 2)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024)))
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "realloc" (core func $realloc))
  (core func $read-c (canon lower (func $read) (memory $mem) (realloc $realloc)))
  (core func $stdin-c (canon lower (func $get-stdin)))
  (core func $drop-c (canon resource.drop $input-stream))
  (core module $m
    (import "h" "read" (func $read (param i32 i64 i32)))
    (import "h" "get-stdin" (func $get-stdin (result i32)))
    (import "h" "drop" (func $drop (param i32)))
    (import "libc" "memory" (memory 2))
    (func (export "run") (result i32) (local $h i32)
      (local.set $h (call $get-stdin))
      (block $done (loop $l
        (call $read (local.get $h) (i64.const 65536) (i32.const 16))
        (br_if $done (i32.load8_u (i32.const 16)))
        (br $l)))
      (call $drop (local.get $h))
      (i32.const 0)))
  (core instance $i (instantiate $m (with "libc" (instance $libc))
    (with "h" (instance (export "read" (func $read-c)) (export "get-stdin" (func $stdin-c)) (export "drop" (func $drop-c))))))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $run-i (export "run" (func $run)))
  (export "wasi:cli/run@0.2.9" (instance $run-i))
)
"""


class Clock(HostInterface):
    wit = "wasi:clocks/monotonic-clock@0.2.9"

    def now(self) -> int:
        return 1


class MemoryStream:
    """An input stream over one reused block of bytes, `total` bytes long."""

    def __init__(self, total: int):
        self.left = total
        self.block = bytes(65536)

    def blocking_read(self, n: int):
        if self.left <= 0:
            return Err(Variant("closed"))
        n = min(n, self.left, len(self.block))
        self.left -= n
        return self.block if n == len(self.block) else self.block[:n]


class Source(HostInterface):
    wit = "bench:io/source"
    resources = {"input-stream": MemoryStream}

    def __init__(self, total: int):
        self.total = total

    def open(self) -> MemoryStream:
        return MemoryStream(self.total)


def engines():
    from wasitls.component.reference import ReferenceBackend

    return {"fast": FastBackend(), "reference": ReferenceBackend()}


def instance(engine, wat: str, *impls):
    comp = engine.load(wasmtime.wat2wasm(wat), cache=CompileCache(None))
    linker = HostLinker()
    for impl in impls:
        linker.register(impl)
    return comp.instantiate(linker)


def bench_host_call(found) -> None:
    per_call = {}
    for name, engine in found.items():
        inst = instance(engine, CLOCK_LOOP, Clock())
        n = 1_000_000 if name == "fast" else 5_000
        inst.call(None, "spin", 10)
        best = min(_timed(lambda: inst.call(None, "spin", n)) for _ in range(3))
        per_call[name] = best / n * 1e6
        print(f"empty host call ({name}): {per_call[name]:.3f} us/call  [{n} calls of monotonic-clock.now]")
    if "reference" in per_call:
        print(f"empty host call: fast is {per_call['reference'] / per_call['fast']:.1f}x faster than reference")
    try:
        baseline = bench_wasmtime_py_add_func()
        print(f"empty host call: fast is {baseline / per_call['fast']:.0f}x faster than wasmtime-py's add_func")
    except Exception as e:  # noqa: BLE001 - a baseline, not the subject
        print(f"wasmtime-py add_func baseline failed: {e}")


def bench_wasi_shaped_call(found) -> None:
    per_call = {}
    for name, engine in found.items():
        inst = instance(engine, READ0_LOOP, Source(1 << 40))
        n = 300_000 if name == "fast" else 5_000
        inst.call(None, "spin", 10)
        best = min(_timed(lambda: inst.call(None, "spin", n)) for _ in range(3))
        per_call[name] = best / n * 1e6
        print(f"WASI-shaped call ({name}): {per_call[name]:.3f} us/call  [{n} calls of "
              f"input-stream.blocking-read(borrow, 0) -> result<list<u8>, stream-error>]")
    if "reference" in per_call:
        print(f"WASI-shaped call: fast is {per_call['reference'] / per_call['fast']:.1f}x faster than reference")
    try:
        baseline = bench_wasmtime_py_add_func_read0()
        print(f"WASI-shaped call: fast is {baseline / per_call['fast']:.0f}x faster than wasmtime-py's add_func")
    except Exception as e:  # noqa: BLE001 - a baseline, not the subject
        print(f"wasmtime-py add_func baseline (WASI-shaped) failed: {type(e).__name__}: {e}")


def bench_wasmtime_py_add_func_read0() -> float:
    """The WASI-shaped call through wasmtime-py's own component API: a host resource, a borrowed handle
    arriving as ResourceAny, a list<u8> result returned as bytes."""
    from wasmtime import component as wc

    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    comp = wc.Component(engine, wasmtime.wat2wasm(READ0_LOOP))
    linker = wc.Linker(engine)
    with linker.root() as root:
        with root.add_instance("bench:io/source") as li:
            li.add_resource("input-stream", wc.ResourceType.host(7), lambda _store, _rep: None)
            li.add_func("open", lambda _store: wc.ResourceHost.own(1, 7))
            def blocking_read(store, this, _len):
                this.drop(store)  # wasmtime-py hands borrows over as ResourceAny that must be released
                return b""

            li.add_func("[method]input-stream.blocking-read", blocking_read)
    inst = linker.instantiate(store, comp)
    spin = inst.get_func(store, "spin")
    n = 2_000

    def once() -> None:
        spin(store, n)
        spin.post_return(store)

    t = min(_timed(once) for _ in range(3))
    us = t / n * 1e6
    print(f"WASI-shaped call (wasmtime-py LinkerInstance.add_func): {us:.3f} us/call  [best of 3 x {n} calls]")
    return us


def bench_wasmtime_py_add_func() -> float:
    """The baseline FINDINGS.md measured: a host function of wasmtime-py's own component API."""
    from wasmtime import component as wc

    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    comp = wc.Component(engine, wasmtime.wat2wasm(CLOCK_LOOP))
    linker = wc.Linker(engine)
    with linker.root() as root:
        with root.add_instance("wasi:clocks/monotonic-clock@0.2.9") as li:
            li.add_func("now", lambda _store: 1)
    inst = linker.instantiate(store, comp)
    spin = inst.get_func(store, "spin")
    n = 2_000

    def once() -> None:
        spin(store, n)
        spin.post_return(store)

    t = min(_timed(once) for _ in range(3))
    us = t / n * 1e6
    print(f"empty host call (wasmtime-py LinkerInstance.add_func): {us:.3f} us/call  [best of 3 x {n} calls]")
    return us


def bench_reads(found) -> None:
    rates = {}
    for name, engine in found.items():
        total = (1 << 30) if name == "fast" else (1 << 20)
        inst = instance(engine, DRAIN, Source(total))
        try:
            t = _timed(lambda: inst.call(None, "drain"))
        except Exception as e:  # report and go on: one engine failing should not hide the others
            print(f"64 KiB blocking-read ({name}): failed: {e}")
            continue
        rates[name] = total / t
        print(f"64 KiB blocking-read, in-memory source ({name}): {total / t / 1e9:.3f} GB/s "
              f"({total >> 20} MiB in {t:.3f} s, {t / (total / 65536) * 1e6:.1f} us/read)")
    if len(rates) == 2:
        print(f"64 KiB reads: fast is {rates['fast'] / rates['reference']:.0f}x faster than reference")


def bench_stdin(mib: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wasm = Path(tmp) / "stdin.wasm"
        wasm.write_bytes(wasmtime.wat2wasm(STDIN_COMMAND))
        runs = {"wasitls fast": [sys.executable, "-m", "wasitls", "run", "--engine", "fast", str(wasm)],
                "wasitls reference": [sys.executable, "-m", "wasitls", "run", "--engine", "reference", str(wasm)]}
        cli = shutil.which("wasmtime")
        if cli:
            runs["wasmtime CLI"] = [cli, "run", str(wasm)]
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
        for name, cmd in runs.items():
            size = mib if "reference" not in name else min(mib, 4)
            feed = subprocess.Popen(["head", "-c", f"{size}M", "/dev/zero"], stdout=subprocess.PIPE)
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, stdin=feed.stdout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            feed.stdout.close()  # the reader alone holds the pipe: if it stops early, head gets SIGPIPE
            out, err = proc.communicate()
            dt = time.perf_counter() - t
            feed.wait()
            done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
            status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.decode()[-300:]}"
            print(f"stdin {size} MiB in 64 KiB blocking-read ({name}): {size * (1 << 20) / dt / 1e9:.3f} GB/s "
                  f"in {dt:.2f} s, process start included [{status}]")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stdin", type=int, metavar="MIB", help="also run the stdin command over MIB mebibytes")
    ns = ap.parse_args()
    found = engines()
    bench_host_call(found)
    bench_wasi_shaped_call(found)
    bench_reads(found)
    if ns.stdin:
        bench_stdin(ns.stdin)


if __name__ == "__main__":
    main()
