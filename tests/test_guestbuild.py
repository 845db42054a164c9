from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from guests import GUEST_LIB, GUESTS_DIR, guest_world
from wasitls import guestbuild


def test_assembled_wit_has_every_package_and_a_patched_tls(tmp_path):
    wit = guestbuild.assemble_wit(GUESTS_DIR / "tls_client" / "wit", tmp_path / "wit")
    assert sorted(p.name for p in (wit / "deps").iterdir()) == [
        "cli", "clocks", "filesystem", "http", "io", "random", "sockets", "tls", "wasitls-tls-0.1.0"]
    ours = (wit / "deps" / "wasitls-tls-0.1.0" / "tls.wit").read_text()
    assert "package wasitls:tls@0.1.0;" in ours and "use wasi:io/streams@0.2.9.{input-stream" in ours
    types = (wit / "deps" / "tls" / "types.wit").read_text()
    assert "use wasi:io/streams@0.2.9.{input-stream, output-stream};" in types
    assert "@0.2.6" not in types
    # The vendored copy stays as published.
    assert "use wasi:io/streams@0.2.6." in (guestbuild.WASI_TLS_PACKAGE / "types.wit").read_text()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("WASITLS_GUEST_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert guestbuild.guest_cache_dir() == tmp_path / "xdg" / "wasitls" / "guests"
    monkeypatch.setenv("WASITLS_GUEST_CACHE", str(tmp_path / "mine"))
    assert guestbuild.guest_cache_dir() == tmp_path / "mine"


def test_second_build_is_a_cache_hit(build_guest):
    built = build_guest("wasi_probe")
    assert built.stat().st_size > 1_000_000
    assert built.read_bytes()[:4] == b"\0asm"
    said = []
    again = guestbuild.build_guest(GUESTS_DIR / "wasi_probe", guest_world("wasi_probe"), python_path=[GUEST_LIB],
                                   progress=said.append)
    assert (again, said) == (built, [])


def test_key_depends_on_world_and_features(tmp_path, monkeypatch):
    calls = fake_componentize(tmp_path, monkeypatch)
    source = GUESTS_DIR / "wasi_probe"
    first = guestbuild.build_guest(source, "wasi-probe", cache_dir=tmp_path / "cache")
    other_features = guestbuild.build_guest(source, "wasi-probe", features=(), cache_dir=tmp_path / "cache")
    other_world = guestbuild.build_guest(source, "other", cache_dir=tmp_path / "cache")
    assert len({first, other_features, other_world}) == 3
    assert len(calls.read_text().splitlines()) == 3


def test_key_depends_on_the_shared_modules(tmp_path, monkeypatch):
    calls = fake_componentize(tmp_path, monkeypatch)
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "shared.py").write_text("VALUE = 1\n")
    source = GUESTS_DIR / "wasi_probe"
    first = guestbuild.build_guest(source, "wasi-probe", python_path=[lib], cache_dir=tmp_path / "cache")
    assert guestbuild.build_guest(source, "wasi-probe", python_path=[lib], cache_dir=tmp_path / "cache") == first
    (lib / "shared.py").write_text("VALUE = 2\n")
    changed = guestbuild.build_guest(source, "wasi-probe", python_path=[lib], cache_dir=tmp_path / "cache")
    without = guestbuild.build_guest(source, "wasi-probe", cache_dir=tmp_path / "cache")
    assert len({first, changed, without}) == 3
    built = calls.read_text().splitlines()
    assert len(built) == 3
    assert built[0].count(" -p ") == 2 and built[2].count(" -p ") == 1  # the guest's own directory, then the lib


def test_concurrent_builds_of_one_guest_build_once(tmp_path, monkeypatch):
    calls = fake_componentize(tmp_path, monkeypatch, delay=0.5)
    results = []

    def build():
        results.append(guestbuild.build_guest(GUESTS_DIR / "wasi_probe", "wasi-probe", cache_dir=tmp_path / "cache"))

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1
    assert results[0].read_bytes() == b"\0asm fake"
    assert len(calls.read_text().splitlines()) == 1
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_build_failure_reports_componentize_py_output(tmp_path):
    with pytest.raises(guestbuild.GuestBuildError, match="no-such-world"):
        guestbuild.build_guest(GUESTS_DIR / "wasi_probe", "no-such-world", cache_dir=tmp_path)
    assert list(tmp_path.glob("*.wasm")) == []


def fake_componentize(tmp_path: Path, monkeypatch, delay: float = 0.0) -> Path:
    """Stand in for componentize-py: log each call, sleep, write a stub at -o."""
    calls = tmp_path / "calls.log"
    calls.touch()
    script = (
        "import sys, time\n"
        f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"time.sleep({delay})\n"
        "open(sys.argv[sys.argv.index('-o') + 1], 'wb').write(b'\\0asm fake')\n"
    )
    monkeypatch.setattr(guestbuild, "_componentize_command", lambda: [sys.executable, "-c", script])
    return calls

