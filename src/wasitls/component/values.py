"""Plain Python values for component-model values: the contract between backends and host code.

Every backend (the wasmtime-py binding and our own canonical-ABI runtime) lifts guest values into
these forms and lowers these forms into guest values, so host interfaces never see a backend's types.

    bool, u8..u64, s8..s64     bool / int
    f32, f64                   float
    char                       str of length 1
    string                     str
    list<u8>                   bytes (bytearray and memoryview are accepted when lowering)
    list<T>                    list
    tuple<...>                 tuple
    record                     dict keyed by the WIT field names ("data-access-timestamp")
    variant                    Variant(case, value)          (value None for a case with no payload)
    enum                       str: the WIT case name
    flags                      set of str: the WIT names of the flags that are set
    option<T>                  None, or the value; Some(value) where T itself can be None
                               (lowering accepts Some anywhere)
    result<T, E>               Ok(value) or Err(value); a host function may also return the ok value
                               bare, or raise Err(value) to return the error case
    own<R>, borrow<R>          the host object itself (for host resources); a guest resource is a
                               GuestResource handed out by the backend
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Variant(NamedTuple):
    case: str
    value: Any = None


class Some(NamedTuple):
    """The `some` case of an option whose payload can itself be None (option<option<T>>)."""

    value: Any


class Ok(NamedTuple):
    value: Any = None


class Err(Exception):
    """The `err` case of a result; raising it from a host function returns that error to the guest."""

    def __init__(self, value: Any = None):
        super().__init__(value)
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Err) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("Err", repr(self.value)))

    def __repr__(self) -> str:
        return f"Err({self.value!r})"


class Trap(Exception):
    """Raised by host code to trap the guest with a message (e.g. an invalid handle)."""


class GuestExit(Exception):
    """Raised by wasi:cli/exit to unwind the guest; carries the process exit status."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status
