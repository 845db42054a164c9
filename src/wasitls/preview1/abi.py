"""How a preview-1 host function meets the guest: raw i32/i64 slots in, one errno out, guest memory.

Each function is a Python method taking the core parameters as unsigned ints; it returns nothing
(success) or raises `Errno`. `Err` values of the wasi/ objects it translates onto become their errno
here, in one place, as do out-of-bounds guest pointers (FAULT).
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from ..component.values import Err, Trap
from . import witx

M32 = (1 << 32) - 1
M64 = (1 << 64) - 1


class Errno(Exception):
    """A preview-1 errno to return to the guest."""

    def __init__(self, errno: int):
        super().__init__(errno)
        self.errno = errno


def invalid_enum(name: str, value: int) -> Trap:
    """A value outside a witx enum: a trap, as wasmtime's generated bindings make it (not an errno)."""
    return Trap(f"invalid enum value {value} for {name}")


def errno_of(e: Err) -> int:
    code = e.value
    if isinstance(code, str):
        return witx.from_fs_code(code) if code in witx._FS_CODES else witx.from_net_code(code)
    return witx.IO


def make_adapter(method: Callable[..., Any], sig: str, has_result: bool = True) -> Callable[[Any], None]:
    """A raw-slot callback for `method`; `sig` has one letter per core parameter: i (i32) or I (i64)."""
    masks = tuple(M32 if c == "i" else M64 for c in sig)
    n = len(masks)  # each raw slot (wasmtime_val_raw_t) is 16 bytes: two u64s

    def call(slots: Any) -> int:
        try:
            method(*[slots[2 * k] & masks[k] for k in range(n)])
            return 0
        except Errno as e:
            return e.errno
        except Err as e:
            return errno_of(e)
        except (struct.error, IndexError, ValueError):  # a guest pointer or length outside its memory
            return witx.FAULT
        except OSError as e:
            return witx.from_host_errno(e.errno)
        except UnicodeError:
            return witx.ILSEQ

    if not has_result:
        def adapter_no_result(slots: Any) -> None:
            method(*[slots[2 * k] & masks[k] for k in range(n)])
        return adapter_no_result

    def adapter(slots: Any) -> None:
        slots[0] = call(slots)
    return adapter


def signed64(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


# -- guest memory ------------------------------------------------------------------------------------
_U16, _U32, _U64, _IOVEC = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q"), struct.Struct("<II")


def get_u16(mem: memoryview, ptr: int) -> int:
    return _U16.unpack_from(mem, ptr)[0]


def get_u32(mem: memoryview, ptr: int) -> int:
    return _U32.unpack_from(mem, ptr)[0]


def get_u64(mem: memoryview, ptr: int) -> int:
    return _U64.unpack_from(mem, ptr)[0]


def put_u16(mem: memoryview, ptr: int, value: int) -> None:
    _U16.pack_into(mem, ptr, value)


def put_u32(mem: memoryview, ptr: int, value: int) -> None:
    _U32.pack_into(mem, ptr, value)


def put_u64(mem: memoryview, ptr: int, value: int) -> None:
    _U64.pack_into(mem, ptr, value & M64)


def in_bounds(mem: memoryview, ptr: int, length: int) -> None:
    if ptr + length > len(mem):
        raise Errno(witx.FAULT)


def get_bytes(mem: memoryview, ptr: int, length: int) -> bytes:
    if ptr + length > len(mem):
        raise Errno(witx.FAULT)
    return bytes(mem[ptr:ptr + length])


def put_bytes(mem: memoryview, ptr: int, data: Any) -> None:
    n = len(data)
    if ptr + n > len(mem):
        raise Errno(witx.FAULT)
    mem[ptr:ptr + n] = data


def get_str(mem: memoryview, ptr: int, length: int) -> str:
    try:
        return get_bytes(mem, ptr, length).decode("utf-8")
    except UnicodeDecodeError:
        raise Errno(witx.ILSEQ) from None


def iovecs(mem: memoryview, ptr: int, count: int) -> list[tuple[int, int]]:
    """(buf, len) of each iovec / ciovec in the guest's array."""
    in_bounds(mem, ptr, 8 * count)  # before building anything of a guest-chosen size
    return [_IOVEC.unpack_from(mem, ptr + 8 * k) for k in range(count)]


def gather(mem: memoryview, ptr: int, count: int) -> bytes:
    """The bytes a ciovec array names, in order."""
    parts = []
    for buf, length in iovecs(mem, ptr, count):
        if length:
            if buf + length > len(mem):
                raise Errno(witx.FAULT)
            parts.append(mem[buf:buf + length])
    return b"".join(parts)


def scatter(mem: memoryview, vecs: list[tuple[int, int]], data: Any) -> int:
    """Copies `data` into the iovecs in order; returns how many bytes were placed."""
    view = memoryview(data) if not isinstance(data, memoryview) else data
    placed = 0
    for buf, length in vecs:
        if placed >= len(view):
            break
        chunk = view[placed:placed + length]
        put_bytes(mem, buf, chunk)
        placed += len(chunk)
    return placed
