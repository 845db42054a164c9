"""The reference engine's known limitation (issue 10, F9): wasmtime-py 50's component API traps before
the host is called when a guest call lends the host two borrowed resources. It is reported as that
limitation in one line, not as wasmtime's "this is a bug" page; calls lending one resource work."""

from __future__ import annotations

import pytest
import wasmtime

from wasitls.component.compile_cache import CompileCache
from wasitls.component.errors import GuestTrap
from wasitls.component.linker import HostInterface, HostLinker
from wasitls.component.reference import ReferenceBackend
from wasitls.component.wasmtime_capi import WASMTIME_VERSION

# run(which): makes two host resources, then lends the host one (1), two (2), a list of one (3) or of two (4)
LENDER = r"""
(component
  (import "test:x/host" (instance $h
    (export "r" (type $r (sub resource)))
    (export "make" (func (result (own $r))))
    (export "one" (func (param "a" (borrow $r)) (result u32)))
    (export "two" (func (param "a" (borrow $r)) (param "b" (borrow $r)) (result u32)))
    (export "lst" (func (param "a" (list (borrow $r))) (result u32)))))
  (core module $libc (memory (export "mem") 1))
  (core instance $libc (instantiate $libc))
  (core func $make (canon lower (func $h "make")))
  (core func $one (canon lower (func $h "one")))
  (core func $two (canon lower (func $h "two")))
  (core func $lst (canon lower (func $h "lst") (memory (core memory $libc "mem"))))
  (core module $m
    (import "h" "make" (func $make (result i32)))
    (import "h" "one" (func $one (param i32) (result i32)))
    (import "h" "two" (func $two (param i32 i32) (result i32)))
    (import "h" "lst" (func $lst (param i32 i32) (result i32)))
    (import "libc" "mem" (memory 1))
    (func (export "run") (param $which i32) (result i32) (local $a i32) (local $b i32)
      (local.set $a (call $make)) (local.set $b (call $make))
      (i32.store (i32.const 0) (local.get $a)) (i32.store (i32.const 4) (local.get $b))
      (if (result i32) (i32.eq (local.get $which) (i32.const 1)) (then (call $one (local.get $a)))
      (else (if (result i32) (i32.eq (local.get $which) (i32.const 2)) (then (call $two (local.get $a) (local.get $b)))
      (else (if (result i32) (i32.eq (local.get $which) (i32.const 3)) (then (call $lst (i32.const 0) (i32.const 1)))
      (else (call $lst (i32.const 0) (i32.const 2))))))))))
  (core instance $i (instantiate $m
    (with "h" (instance (export "make" (func $make)) (export "one" (func $one)) (export "two" (func $two))
                        (export "lst" (func $lst))))
    (with "libc" (instance $libc))))
  (func $run (param "which" u32) (result u32) (canon lift (core func $i "run")))
  (instance $api (export "run" (func $run)))
  (export "test:x/api" (instance $api)))
"""


class Thing:
    pass


class Lender(HostInterface):
    wit = "test:x/host"
    resources = {"r": Thing}

    def make(self):
        return Thing()

    def one(self, a):
        return 1

    def two(self, a, b):
        return 2

    def lst(self, items):
        return len(items)


@pytest.fixture(scope="module")
def component():
    return ReferenceBackend().load(wasmtime.wat2wasm(LENDER), cache=CompileCache(None))


def run(component, which: int) -> int:
    linker = HostLinker()
    linker.register(Lender(), "test:x/host")
    return component.instantiate(linker).call("test:x/api", "run", which)


def test_one_borrowed_resource_is_lent(component):
    assert run(component, 1) == 1
    assert run(component, 3) == 1


@pytest.mark.parametrize("which", [2, 4])
def test_two_borrowed_resources_name_the_limitation(component, which):
    """No name in the guest's backtrace here: the line lists the imports that lend two resources."""
    with pytest.raises(GuestTrap) as trap:
        run(component, which)
    assert str(trap.value) == (
        f"the reference engine (wasmtime-py {WASMTIME_VERSION}'s component API) cannot make host calls that "
        "borrow two resources; use the fast engine (--engine fast) (it was one of: test:x/host#two, test:x/host#lst)")
