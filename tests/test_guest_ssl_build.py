"""`wasitls build`: a Python guest from an app module with the host-TLS ssl package, third-party
packages from -p paths only, cached by everything that goes in; requests (urllib3 2.x) unchanged."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from guest_ssl import GUESTS, REPO, HttpsServer, built_app, make_pki, pypi_site, run

APPS = GUESTS / "pyssl_apps"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pyssl-build-pki"))


@pytest.fixture(scope="module")
def https(pki):
    server = HttpsServer(pki.server_pem)
    server.start()
    yield server
    server.close()


def wasitls(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "wasitls", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env)


def test_build_command_runs_a_plain_script(pki, https, tmp_path):
    out = tmp_path / "fetch.wasm"
    built = wasitls("build", str(APPS / "fetch_script.py"), "-o", str(out))
    assert built.returncode == 0, built.stderr
    assert built.stderr.strip().endswith(f"wasitls: wrote {out}")
    ok = run(out, [f"https://localhost:{https.port}/script"], "--allow-net", "localhost", "--ca-file", str(pki.ca))
    assert ok.status == 0, ok
    assert ok.facts() == {"status": "200", "body": "hello from /script"}
    exits = run(out, [f"https://localhost:{https.port}/script", "3"], "--allow-net", "localhost",
                "--ca-file", str(pki.ca))
    assert exits.status == 1, exits  # sys.exit(3): WASI 0.2 carries only failure


def test_build_errors_are_one_line(tmp_path):
    missing = wasitls("build", str(tmp_path / "nope.py"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"wasitls: error: {tmp_path / 'nope.py'}: no such file"
    unknown = wasitls("build", "no_such_module", "-p", str(tmp_path))
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == f"wasitls: error: module 'no_such_module' is in none of the -p paths ({tmp_path})"


def test_build_cache_key_includes_the_python_path(tmp_path):
    """A changed file in a -p directory makes a new component (componentize-py's own site-packages
    are never used: only what the -p paths hold goes in)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    results = []
    for word in ("one", "two"):
        (lib / "helper.py").write_text(f"WORD = {word!r}\n")
        wasm = built_app(APPS / "cachekey" / "app.py", lib)
        results.append(run(wasm, []).facts().get("helper"))
    assert results == ["one", "two"]


def test_requests_unchanged(pki, https):
    """requests.get with its default verification (certifi's bundle is not in a component: the host's
    trust answers), a session's keep-alive, verify=PATH and a host-held client certificate."""
    wasm = built_app(APPS / "requests_app.py", pypi_site())
    mtls = HttpsServer(pki.server_pem, client_ca=pki.client_ca)
    mtls.start()
    before = https.connections
    try:
        r = run(wasm, [f"https://localhost:{https.port}", "session", "verify=/pki/ca.pem", "verify=/pki/client-ca.pem"],
                "--allow-net", "localhost", "--ca-file", str(pki.ca), "--dir", f"{pki.dir}::/pki")
        with_cert = run(wasm, [f"https://localhost:{mtls.port}", "cert=host-identity:me"], "--allow-net", "localhost",
                        "--ca-file", str(pki.ca), "--identity", f"me={pki.client_key},{pki.client_cert}")
        without = run(wasm, [f"https://localhost:{mtls.port}", "session"], "--allow-net", "localhost",
                      "--ca-file", str(pki.ca))
    finally:
        mtls.close()
    assert r.status == 0, r
    lines = r.out.splitlines()
    assert lines[:3] == ["session: status=200 body=hello from /one", "session: status=200 body=hello from /two",
                         "verify: status=200 body=hello from /verify"], r
    # a guest's roots narrow the host's trust: a CA that did not issue the server's chain refuses it
    assert lines[3].startswith("verify: SSLError") and "none of the CAs the guest loaded" in lines[3], r
    # the session's two requests shared one connection; the refused one never finished a handshake
    assert https.connections == before + 2
    assert with_cert.status == 0, with_cert
    assert with_cert.out.strip() == "cert: status=200 body=hello from /cert to guest-client", with_cert
    assert without.out.startswith("session: SSLError") and "certificate required" in without.out, without
