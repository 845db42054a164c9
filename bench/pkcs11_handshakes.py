"""Handshakes per second with a server key in a PKCS#11 token (SoftHSM2) against the same kind of key
from a file, on one core.

The host's ServerEngine (over memory, no sockets) serves a Python ssl client (SSLObject over
MemoryBIO, verifying the certificate, no session resumption: every handshake is a full one and the
server signs once). The token is made in a temporary directory, as tests/test_pkcs11.py does; its
keys are generated inside it, not extractable. SoftHSM2 is a library, so the token's signing runs
on the same core as the rest; a hardware token would add its own latency.

    python bench/pkcs11_handshakes.py [SECONDS_PER_CASE]     (default 3)
"""

from __future__ import annotations

import datetime
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from tls_engine import EngineSide, SslSide, connect  # noqa: E402

from wasitls.tls.engine import EngineConfig, ServerEngine  # noqa: E402
from wasitls.tls.identity import PrivateIdentity  # noqa: E402
from wasitls.tls.pkcs11 import token_identity  # noqa: E402
from wasitls.tls.trust import TrustStore  # noqa: E402

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = b"1234"
KEY_SPECS = {"RSA-2048": ("rsa:2048", "rsa", "01"), "ECDSA-P256": ("EC:prime256v1", "ec", "02")}


def make_token(root: Path) -> None:
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", PIN.decode(),
                    "--so-pin", "5678"], check=True, capture_output=True)
    for spec, label, key_id in KEY_SPECS.values():
        subprocess.run(["pkcs11-tool", "--module", MODULE, "--login", "--pin", PIN.decode(), "--keypairgen",
                        "--key-type", spec, "--label", label, "--id", key_id, "--usage-sign"],
                       check=True, capture_output=True)
        subprocess.run(["pkcs11-tool", "--module", MODULE, "--read-object", "--type", "pubkey", "--label", label,
                        "-o", str(root / f"{label}.pub.der")], check=True, capture_output=True)


def issue(ca_key, ca_name, public_key) -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")]))
            .issuer_name(ca_name).public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("example.com")]), False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def rate(identity: PrivateIdentity, config: EngineConfig, client_ctx: ssl.SSLContext, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        server = EngineSide(ServerEngine(config, identities=[identity], pause_on_client_hello=False))
        connect(SslSide(client_ctx, False), server)
        count += 1
    return count / elapsed


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core: the token (a library) shares it
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_pem = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
              .sign(ca_key, hashes.SHA256())).public_bytes(serialization.Encoding.PEM)
    config = EngineConfig(TrustStore.from_pem(ca_pem))
    print(f"one core, {seconds:g} s per case, full handshakes (no resumption), host server engine <- Python ssl client")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_token(root)
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
            client_ctx.minimum_version = client_ctx.maximum_version = version
            for name, (_spec, label, _key_id) in KEY_SPECS.items():
                file_key = (rsa.generate_private_key(65537, 2048) if label == "rsa"
                            else ec.generate_private_key(ec.SECP256R1()))
                file_identity = PrivateIdentity.parse(
                    file_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()),
                    issue(ca_key, ca_name, file_key.public_key()))
                public = serialization.load_der_public_key((root / f"{label}.pub.der").read_bytes())
                token = token_identity(f"pkcs11:token=bench;object={label};type=private",
                                       issue(ca_key, ca_name, public), module=MODULE, pin=PIN)
                from_file = rate(file_identity, config, client_ctx, seconds)
                from_token = rate(token, config, client_ctx, seconds)
                print(f"{version.name:8} {name:11} file {from_file:7.1f}/s   token {from_token:7.1f}/s   "
                      f"token/file {from_token / from_file:.2f}x")


if __name__ == "__main__":
    main()
