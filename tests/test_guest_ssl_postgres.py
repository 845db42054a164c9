"""Database mTLS end to end: a real PostgreSQL (ssl=on, server certificate from one CA, client
certificates from another, pg_hba `hostssl ... cert` and nothing else) and two guests: pg8000,
unchanged, over the guest's ssl module with the client key held by the host; and a small guest on
wasitls:tls directly (SSLRequest on the raw TCP streams, then TLS on the same streams). Both read
their own identity back from pg_stat_ssl; refusals for a missing client certificate, an untrusted
client CA and an untrusted server."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from guest_ssl import GUESTS, build_probe, built_app, free_port, pypi_site, run

USER = "pgclient"  # the database user; `cert` authentication maps the certificate's CN to it


def pg_binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        pytest.skip(f"{name} not found (apt-get install postgresql)")
    return found


@dataclass
class Postgres:
    port: int
    dir: Path
    server_ca: Path
    client_key: Path
    client_cert: Path
    rogue_key: Path
    rogue_cert: Path


@pytest.fixture(scope="module")
def postgres():
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user (apt-get install postgresql)")
    if os.geteuid() != 0:
        pytest.skip("starting PostgreSQL as the postgres user needs root")
    root = Path(tempfile.mkdtemp(prefix="wasitls-pg-", dir="/tmp"))
    server_ca, client_ca, rogue_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("localhost", "127.0.0.1")
    client = client_ca.issue_cert("client.test", common_name=USER)
    rogue = rogue_ca.issue_cert("client.test", common_name=USER)  # the right name from a CA nobody trusts
    files = {"server-ca.pem": server_ca.cert_pem, "client-ca.pem": client_ca.cert_pem,
             "server.key": server.private_key_pem, "server.crt": server.cert_chain_pems[0],
             "client.key": client.private_key_pem, "client.crt": client.cert_chain_pems[0],
             "rogue.key": rogue.private_key_pem, "rogue.crt": rogue.cert_chain_pems[0]}
    for name, blob in files.items():
        blob.write_to_path(str(root / name))
    data = root / "data"
    data.mkdir()
    for path in [root, *root.iterdir()]:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    os.chmod(root / "server.key", 0o600)

    def as_postgres(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, timeout=120)

    made = as_postgres(initdb, "-D", str(data), "-U", USER, "-E", "UTF8", "--no-sync")
    assert made.returncode == 0, made.stderr
    (data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 cert\n")
    port = free_port()
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c ssl=on -c fsync=off"
               f" -c ssl_cert_file={root}/server.crt -c ssl_key_file={root}/server.key"
               f" -c ssl_ca_file={root}/client-ca.pem")
    started = as_postgres(pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o", options, "start")
    assert started.returncode == 0, started.stdout + started.stderr + (root / "log").read_text()
    yield Postgres(port, root, root / "server-ca.pem", root / "client.key", root / "client.crt",
                   root / "rogue.key", root / "rogue.crt")
    as_postgres(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def pg8000_guest():
    return built_app(GUESTS / "pyssl_pg8000" / "app.py", pypi_site())


@pytest.fixture(scope="module")
def raw_guest():
    from wasitls.devtools import GUEST_LIB

    return build_probe("pyssl_pgraw", extra_path=(GUEST_LIB,))


def host(pg: Postgres, *more: str, ca: Path | None = None) -> list[str]:
    return ["--allow-net", f"localhost:{pg.port}", "--ca-file", str(ca or pg.server_ca), *more]


def held(pg: Postgres, rogue: bool = False) -> list[str]:
    key, cert = (pg.rogue_key, pg.rogue_cert) if rogue else (pg.client_key, pg.client_cert)
    return ["--identity", f"pg={key},{cert}"]


def test_pg8000_with_a_host_held_client_key(postgres, pg8000_guest):
    r = run(pg8000_guest, ["localhost", postgres.port, USER, "host-identity:pg"], *host(postgres, *held(postgres)))
    assert r.status == 0, r
    ssl_on, version, client_dn = r.facts()["row"].split("|")
    assert (ssl_on, version) == ("True", "TLSv1.3")
    assert client_dn.endswith(f"/CN={USER}")
    assert r.facts()["user"] == USER


def test_pg8000_with_key_files_handed_to_the_host(postgres, pg8000_guest):
    r = run(pg8000_guest, ["localhost", postgres.port, USER, "/pg/client.crt", "/pg/client.key"],
            *host(postgres, "--dir", f"{postgres.dir}::/pg"))
    assert r.status == 0, r
    assert r.facts()["row"].startswith("True|TLSv1.3|") and r.facts()["row"].endswith(f"/CN={USER}")


def test_pg8000_without_a_client_certificate(postgres, pg8000_guest):
    r = run(pg8000_guest, ["localhost", postgres.port, USER], *host(postgres))
    assert r.status == 1, r
    assert "connection requires a valid client certificate" in r.facts()["error"], r


def test_pg8000_with_a_client_certificate_from_an_untrusted_ca(postgres, pg8000_guest):
    r = run(pg8000_guest, ["localhost", postgres.port, USER, "host-identity:pg"],
            *host(postgres, *held(postgres, rogue=True)))
    assert r.status == 1, r
    # TLS 1.3: the client's handshake is over before the server checks its certificate; the alert
    # comes with the first read, which pg8000 reports as a network error caused by it
    assert r.facts()["error"] == "InterfaceError: network error", r
    assert r.facts()["cause"].startswith("SSLError: [SSL: TLSV1_ALERT_UNKNOWN_CA]"), r


def test_pg8000_refuses_an_untrusted_server(postgres, pg8000_guest):
    r = run(pg8000_guest, ["localhost", postgres.port, USER, "host-identity:pg"],
            *host(postgres, *held(postgres), ca=postgres.dir / "client-ca.pem"))
    assert r.status == 1, r
    problem = r.facts().get("cause", r.facts()["error"])
    assert problem.startswith("SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED]"), r
    assert "unable to get local issuer certificate" in problem


def test_raw_wasitls_tls_guest(postgres, raw_guest):
    r = run(raw_guest, ["localhost", postgres.port, "localhost", USER, "pg"], *host(postgres, *held(postgres)))
    assert r.status == 0, r
    f = r.facts()
    assert f["ssl-response"] == "S"
    assert f["handshake"] == "ok version=0x0304"
    assert f["auth"] == "ok"
    ssl_on, version, client_dn = f["row"].split("|")
    assert (ssl_on, version) == ("t", "TLSv1.3") and client_dn.endswith(f"/CN={USER}")


def test_raw_guest_refusals(postgres, raw_guest):
    no_cert = run(raw_guest, ["localhost", postgres.port, "localhost", USER, "none"], *host(postgres))
    untrusted_server = run(raw_guest, ["localhost", postgres.port, "localhost", USER, "pg"],
                           *host(postgres, *held(postgres), ca=postgres.dir / "client-ca.pem"))
    assert no_cert.status == 1 and "28000 connection requires a valid client certificate" in no_cert.facts()["error"], no_cert
    assert untrusted_server.status == 1 and untrusted_server.facts()["handshake"] == "failed", untrusted_server
