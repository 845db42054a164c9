"""`wasitls demo` and README.md: the two commands a newcomer runs, and what they must show."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from wasitls import demo

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 600  # a cold run builds the guest with componentize-py


def wasitls_demo(env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "wasitls", "demo"], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL, cwd=REPO)


def assert_demo_output(out: str) -> None:
    assert re.search(r"^demo: HTTPS server on https://localhost:\d+/ ", out, re.MULTILINE), out
    assert "status: HTTP/1.0 200 OK\n" in out
    assert f"body: {len(demo.PAGE)} bytes\n" in out
    handshake = re.search(r"^handshake: (\d+\.\d) ms$", out, re.MULTILINE)
    assert handshake and float(handshake.group(1)) > 0, out


def test_demo_from_a_fresh_cache_shows_the_build_then_reuses_it(tmp_path):
    caches = {"WASITLS_GUEST_CACHE": str(tmp_path / "guests"), "WASITLS_CACHE_DIR": str(tmp_path / "compiled")}
    first = wasitls_demo(caches)
    assert first.returncode == 0, first.stdout + first.stderr
    assert_demo_output(first.stdout)
    assert "wasitls: building guest 'https-get' with componentize-py" in first.stderr
    assert re.search(r"wasitls: built guest 'https-get' in \d+\.\d s", first.stderr), first.stderr
    assert "Traceback" not in first.stderr

    second = wasitls_demo(caches)
    assert second.returncode == 0, second.stdout + second.stderr
    assert_demo_output(second.stdout)
    assert "building guest" not in second.stderr  # cached


@pytest.mark.parametrize("slow_handler", [False, True], ids=["prompt", "slow-handler"])
def test_demo_stops_its_server(capfd, monkeypatch, slow_handler):
    if slow_handler:  # a request handler still finishing when the guest exits must be waited for
        finish = demo._Handler.finish

        def slow_finish(self):
            finish(self)
            time.sleep(0.5)

        monkeypatch.setattr(demo._Handler, "finish", slow_finish)
    threads_before = set(threading.enumerate())
    assert demo.run_demo() == 0
    out = capfd.readouterr().out
    assert_demo_output(out)
    port = int(re.search(r"https://localhost:(\d+)/", out).group(1))
    # nothing left behind: no server or request-handler thread, and nobody listening on the port
    assert set(threading.enumerate()) <= threads_before
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def fenced_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)


def commands(block: str) -> list[str]:
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def test_readme_starts_with_install_and_demo_then_the_test_commands():
    readme = (REPO / "README.md").read_text()
    intro = readme.split("\n## ")[0]  # before the first section heading
    blocks = fenced_blocks(intro)
    assert len(blocks) >= 2, intro
    assert commands(blocks[0]) == ["pip install .", "wasitls demo"]
    install_tests, run_tests = commands(blocks[1])
    assert re.fullmatch(r"pip install (-e )?'?\.\[test\]'?", install_tests), install_tests
    assert run_tests == "python -m pytest -q"
    # CI runs exactly the command README.md gives
    assert run_tests.replace("python", "python3", 1) in (REPO / ".ci" / "run").read_text()
    assert "[project.optional-dependencies]\ntest = [" in (REPO / "pyproject.toml").read_text()
    assert '[project.scripts]\nwasitls = "wasitls.cli:main"' in (REPO / "pyproject.toml").read_text()
