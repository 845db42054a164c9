"""SipHash-1-3 with a zero key: Rust's DefaultHasher, which wasmtime's metadata-hash uses."""

from __future__ import annotations

import struct

_M64 = (1 << 64) - 1


def siphash13(data: bytes) -> int:
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & _M64

    def sipround() -> None:
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & _M64; v1 = rotl(v1, 13) ^ v0; v0 = rotl(v0, 32)  # noqa: E702
        v2 = (v2 + v3) & _M64; v3 = rotl(v3, 16) ^ v2  # noqa: E702
        v0 = (v0 + v3) & _M64; v3 = rotl(v3, 21) ^ v0  # noqa: E702
        v2 = (v2 + v1) & _M64; v1 = rotl(v1, 17) ^ v2; v2 = rotl(v2, 32)  # noqa: E702

    whole = len(data) - len(data) % 8
    for i in range(0, whole, 8):
        (m,) = struct.unpack_from("<Q", data, i)
        v3 ^= m
        sipround()
        v0 ^= m
    m = (len(data) & 0xFF) << 56
    for i, byte in enumerate(data[whole:]):
        m |= byte << (8 * i)
    v3 ^= m
    sipround()
    v0 ^= m
    v2 ^= 0xFF
    sipround()
    sipround()
    sipround()
    return v0 ^ v1 ^ v2 ^ v3
